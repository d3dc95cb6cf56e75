"""The course's transfer-learning workflow on an image-folder dataset (one sub-folder per class,
e.g. cats vs dogs): a pretrained backbone with its preprocessing, a new head trained with the
backbone frozen (its BatchNorm in inference mode), then the top blocks unfrozen and fine-tuned
with a lower learning rate.

    python experiments/transfer_learning.py --data PATH/TO/FOLDER \
        [--backbone resnet50] [--source keras]

Pretrained weights come from `jaxdl.weights.load` (downloaded where there is network, or from
the cache / a local file); without them the backbone is random and the script says so loudly.
Data: e.g. Kaggle's "dogs-vs-cats" or TFDS cats_vs_dogs images saved as PATH/cat/*.jpg,
PATH/dog/*.jpg. `--smoke` builds a tiny synthetic folder and runs in seconds (resnet18 at 32x32;
with `--weights`, on those weights).

    python experiments/transfer_learning.py --data PATH --weights resnet50.weights.h5
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro
from flax import nnx

from jaxdl import create_model
from jaxdl.data import load_dataset
from jaxdl.errors import JaxdlError
from jaxdl.models.compose import Chain, feature_dim
from jaxdl.nn import Linear
from jaxdl.train import Trainer
from jaxdl.train.optim import fine_tune_patterns
from jaxdl.viz import save_run_pictures
from jaxdl.weights import load
from jaxdl.weights.convert import assign, model_tensors
from jaxdl.weights.io import read_safetensors
from jaxdl.weights.preprocess import KERAS_CAFFE, Preprocessing, PreprocessingLayer

BLOCKS = {
    "resnet": r"^stages/\d+/\d+",
    "densenet": r"^blocks/\d+/layers/\d+",
    "vgg": r"^stages/\d+/\d+",
}
KERAS_ARCH = {"resnet": {"stride_in_1x1": True}}


@dataclass(frozen=True)
class Config:
    data: str | None = None
    """Image folder with one sub-folder per class."""
    backbone: str = "resnet50"
    source: str = "keras"
    weights: str | None = None
    """A local weight file: one `jaxdl.save` wrote (or a converted .safetensors of the weights
    cache), or a --source checkpoint to convert (Keras .weights.h5, torchvision / timm state
    dict). Without it the weights are downloaded (network) or read from the cache."""
    size: int = 224
    batch_size: int = 32
    epochs_head: int = 5
    epochs_finetune: int = 3
    lr_head: float = 1e-3
    lr_finetune: float = 1e-4
    top_blocks: int = 2
    val_fraction: float = 0.2
    seed: int = 0
    smoke: bool = False
    out: str = "runs/transfer_learning"
    """Run directory for the pictures (curves of both phases, one after the other)."""


def synthetic_folder(root: Path, n: int = 24, size: int = 40) -> Path:
    """Two classes of noisy images, reddish and bluish, written as PNG files."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, channel in (("red", 0), ("blue", 2)):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = rng.uniform(0, 120, (size, size, 3))
            img[..., channel] += 120
            Image.fromarray(img.astype(np.uint8)).save(root / c / f"{i}.png")
    return root


def pretrained_backbone(cfg: Config):
    from jaxdl.models import get_entry

    family = get_entry(cfg.backbone).family
    if family not in BLOCKS:
        raise JaxdlError(
            f"--backbone must be of a family with pretrained converters: {sorted(BLOCKS)}"
        )
    arch = KERAS_ARCH.get(family, {}) if cfg.source == "keras" else {}
    backbone = create_model(
        cfg.backbone,
        input_shape=(cfg.size, cfg.size, 3),
        include_top=False,
        pooling="avg",
        rngs=nnx.Rngs(cfg.seed),
        **arch,
    )
    prep = KERAS_CAFFE
    try:
        if cfg.smoke and cfg.weights is None:
            raise JaxdlError("--smoke uses random weights")
        if cfg.weights is not None and cfg.weights.endswith(".safetensors"):
            tensors, meta = read_safetensors(cfg.weights)  # our names: no conversion
            what = f"the weights in {cfg.weights}"
            if meta.get("preprocessing"):
                prep = Preprocessing.from_json(meta["preprocessing"])
        else:
            full, prep = load(cfg.backbone, source=cfg.source, path=cfg.weights, progress=True)
            tensors, what = model_tensors(full), f"pretrained {cfg.source} ImageNet weights"
        assign(
            backbone,
            {k: v for k, v in tensors.items() if not k.startswith("head/")},
            source=f"{what} for {cfg.backbone}",
        )
        print(f"backbone: {cfg.backbone} with {what}")
    except JaxdlError as e:
        bar = "!" * 78
        print(
            f"{bar}\nWARNING: NO PRETRAINED WEIGHTS ({e}).\nThe backbone is RANDOM: the "
            f"accuracies below show the workflow, not transfer learning.\n{bar}",
            file=sys.stderr,
        )
    return backbone, prep, BLOCKS[family]


def main(cfg: Config) -> dict:
    tmp = None
    if cfg.smoke:
        tmp = tempfile.TemporaryDirectory()
        cfg = Config(
            data=str(synthetic_folder(Path(tmp.name))),
            backbone="resnet18",
            size=32,
            batch_size=8,
            epochs_head=2,
            epochs_finetune=1,
            lr_head=1e-2,
            top_blocks=1,
            smoke=True,
            weights=cfg.weights,
            source=cfg.source,
            out=cfg.out,
        )
    if cfg.data is None:
        raise JaxdlError(
            "--data PATH is needed: an image folder with one sub-folder per class "
            "(e.g. dogs-vs-cats saved as PATH/cat/*.jpg, PATH/dog/*.jpg); or try --smoke"
        )
    splits = load_dataset(
        f"folder:{cfg.data},size={cfg.size}x{cfg.size}",
        seed=cfg.seed,
        val_fraction=cfg.val_fraction,
        test_fraction=cfg.val_fraction,
    )
    backbone, prep, block = pretrained_backbone(cfg)
    width = feature_dim(backbone, (cfg.size, cfg.size, 3))
    model = Chain(
        preprocess=PreprocessingLayer(prep),
        backbone=backbone,
        head=Linear(width, splits.num_classes, rngs=nnx.Rngs(cfg.seed + 1)),
    )
    t0 = time.perf_counter()
    # phase 1: the new head on the frozen backbone
    head = Trainer(
        model, optimizer="adam", learning_rate=cfg.lr_head, freeze=[r"^backbone/"], seed=cfg.seed
    )
    h1 = head.fit(
        splits.train, epochs=cfg.epochs_head, batch_size=cfg.batch_size, validation_data=splits.val
    )
    phase1 = head.evaluate(splits.test)
    # phase 2: unfreeze the top blocks, fine-tune with a lower learning rate
    params = nnx.state(head.model, nnx.Param)
    frozen = fine_tune_patterns(params, block, cfg.top_blocks, prefix="backbone/")
    tune = Trainer(
        head.model, optimizer="adam", learning_rate=cfg.lr_finetune, freeze=frozen, seed=cfg.seed
    )
    h2 = tune.fit(
        splits.train,
        epochs=cfg.epochs_finetune,
        batch_size=cfg.batch_size,
        validation_data=splits.val,
    )
    phase2 = tune.evaluate(splits.test, detailed=True)
    both = {k: h1.history[k] + h2.history[k] for k in h1.history if k in h2.history}
    save_run_pictures(
        cfg.out,
        both,
        confusion=phase2["confusion_matrix"],
        class_names=splits.class_names,
        title=f"head ({cfg.epochs_head} epochs), then fine-tuning ({cfg.epochs_finetune})",
    )
    dt = time.perf_counter() - t0
    print(f"head only (backbone frozen): test accuracy {phase1['accuracy']:.4f}")
    print(
        f"fine-tuned (top {cfg.top_blocks} blocks): "
        f"test accuracy {phase2['accuracy']:.4f}  ({dt:.1f}s)"
    )
    if tmp is not None:
        tmp.cleanup()
    return {
        "head_accuracy": phase1["accuracy"],
        "finetune_accuracy": phase2["accuracy"],
        "time_s": dt,
    }


if __name__ == "__main__":
    try:
        main(tyro.cli(Config))
    except JaxdlError as e:
        print(f"transfer_learning: error: {e}", file=sys.stderr)
        sys.exit(2)
