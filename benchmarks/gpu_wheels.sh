#!/usr/bin/env bash
# Wheels for the H200 machine: what jaxdl imports that its image lacks, built for its Python
# (CPython 3.12, x86-64 manylinux). The image already has jax 0.11.2, flax, optax,
# orbax-checkpoint, tensorstore, numpy, torch 2.11, torchvision 0.26, timm, safetensors, rich,
# tqdm, tensorboard, matplotlib, pillow, scikit-learn, absl-py, etils, protobuf, cloudpickle,
# psutil, typing-extensions (the device notes' package list); it has no network.
#
#   bash benchmarks/gpu_wheels.sh            # headline: what benchmarks/gpu_headline.py needs
#   bash benchmarks/gpu_wheels.sh all        # + the `jaxdl` CLI and the other scripts (tyro...)
#
# writes .whl/ (git-ignored) and prints the files and their total size. On the device:
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#     --target /tmp/site .whl/*.whl && export PYTHONPATH=$PWD:/tmp/site
#
# headline: jaxdl.data.pipeline imports grain at module level (Trainer.fit's input pipeline),
#   and grain needs array-record and portpicker; nothing else the headline imports is missing.
# all: tyro (jaxdl.cli and every script but gpu_headline.py, with docstring-parser and
#   typeguard) and tensorboardX (the TensorBoard callback, imported when used).
# Not carried: tensorflow-datasets (TfdsSource only, imported when used; it needs TFDS data,
#   which the device machine does not have, and pulls in a dozen more packages).
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-headline}
headline=(grain==0.2.18 array-record==0.8.6 portpicker==1.6.0)
extra=(tyro==1.0.17 docstring-parser==0.18.0 typeguard==4.6.1 tensorboardX==2.6.5)
case "$what" in
  headline) pkgs=("${headline[@]}") ;;
  all) pkgs=("${headline[@]}" "${extra[@]}") ;;
  *) echo "usage: $0 [headline|all]" >&2; exit 2 ;;
esac
rm -rf .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  -d .whl "${pkgs[@]}"
ls -l .whl | awk 'NR > 1 {printf "%9d  %s\n", $5, $9}'
du -sh .whl
