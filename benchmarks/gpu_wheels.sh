#!/usr/bin/env bash
# Wheels for the GPU machine (Python 3.12, no network; it has jax, torch, torchvision, timm):
# jaxdl's pure-Python dependencies that the benchmarks import, without their own dependencies
# (flax's orbax / tensorstore are not imported by the benchmarks). Run here, then carry .whl:
#   bash benchmarks/gpu_wheels.sh            # writes .whl/ (git-ignored), about 25 MB
# and on the device:
#   pip install --no-deps --no-index .whl/*.whl
set -euo pipefail
cd "$(dirname "$0")/.."
pip download --no-deps --only-binary=:all: --python-version 3.12 \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 -d .whl \
  flax optax tyro rich treescope msgpack docstring-parser typeguard shtab etils absl-py \
  pygments markdown-it-py mdurl pyyaml typing-extensions \
  matplotlib contourpy cycler fonttools kiwisolver pillow pyparsing python-dateutil six packaging
du -sh .whl
