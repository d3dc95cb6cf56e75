"""Input pipeline throughput: decoded images per second from an image folder, and batches per
second from a TFDS-style random-access source and from in-memory arrays.

    python benchmarks/input_throughput.py [--images 512] [--workers 0 2] [--json]

An image folder of `--images` JPEG and PNG files (`--side` pixels, two classes, random
content so that the codecs do real work) is written to a temporary directory, then read through
`Pipeline` (Pillow decode + resize to `--size`) with each worker count. The TFDS source is
`tfds.testing.mock_data`'s MNIST (ArrayRecord-like random access, records decoded per example),
so no download is needed. Each figure is the steady state over two epochs: the time to the first
batch (worker start-up) is excluded and reported separately as `startup_s`.
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro

from jaxdl.data import ArrayDataset, Pipeline, load_dataset


@dataclass(frozen=True)
class Config:
    images: int = 512
    side: int = 160
    """Side of the generated images (pixels)."""
    size: int = 128
    """Decoded images are resized to size x size."""
    batch_size: int = 64
    workers: tuple[int, ...] = (0, 2)
    tfds_examples: int = 4096
    json: bool = False


def timed(pipe: Pipeline, epochs: int = 2) -> tuple[float, float, int]:
    """(start-up seconds to the first batch, seconds for the rest, batches after the first) over
    `epochs` consecutive epochs (with workers, one pool serves them all)."""
    t0 = time.perf_counter()
    it = pipe.iterator(num_epochs=epochs)
    next(it)
    t1 = time.perf_counter()
    n = sum(1 for _ in it)
    return t1 - t0, time.perf_counter() - t1, n


def write_folder(root: Path, n: int, side: int):
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        d = root / f"class{i % 2}"
        d.mkdir(parents=True, exist_ok=True)
        # smooth gradients plus noise: compresses like a photo, not like a flat image
        base = np.linspace(0, 255, side, dtype=np.float32)[None, :, None] * np.ones(
            (side, 1, 3), np.float32
        )
        img = np.clip(base + rng.normal(0, 30, (side, side, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(d / (f"{i}.jpg" if i % 2 else f"{i}.png"))


def main(cfg: Config) -> list[dict]:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        write_folder(root, cfg.images, cfg.side)
        splits = load_dataset(
            f"folder:{root},size={cfg.size}x{cfg.size}", val_fraction=0.0, test_fraction=0.01
        )
        for w in cfg.workers:
            startup, dt, n = timed(
                Pipeline(splits.train, cfg.batch_size, num_workers=w, prefetch=4)
            )
            results.append(
                {
                    "source": f"image folder ({cfg.side}px JPEG/PNG -> {cfg.size}px)",
                    "workers": w,
                    "images_per_s": round(n * cfg.batch_size / dt, 1),
                    "batches_per_s": round(n / dt, 2),
                    "startup_s": round(startup, 2),
                }
            )
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=cfg.tfds_examples):
        s = load_dataset("tfds:mnist", val_fraction=0.0)
        startup, dt, n = timed(Pipeline(s.train, 128))
        results.append(
            {
                "source": "tfds mnist (mock_data, data_source)",
                "workers": 0,
                "batch_size": 128,
                "batches_per_s": round(n / dt, 2),
                "images_per_s": round(n * 128 / dt, 1),
                "startup_s": round(startup, 2),
            }
        )
    arrays = ArrayDataset(np.zeros((60000, 28, 28, 1), np.float32), np.zeros(60000, np.int32))
    startup, dt, n = timed(Pipeline(arrays, 128))
    results.append(
        {
            "source": "in-memory arrays 60000x28x28x1",
            "workers": 0,
            "batch_size": 128,
            "batches_per_s": round(n / dt, 2),
            "images_per_s": round(n * 128 / dt, 1),
            "startup_s": round(startup, 2),
        }
    )
    machine = f"{platform.machine()}, {__import__('os').cpu_count()} CPU cores visible"
    for r in results:
        r["machine"] = machine
        print(
            json.dumps(r)
            if cfg.json
            else f"{r['source']:48s} workers {r['workers']}: {r['images_per_s']:9.1f} images/s "
            f"{r['batches_per_s']:8.2f} batches/s (start-up {r['startup_s']}s)"
        )
    return results


if __name__ == "__main__":
    main(tyro.cli(Config))
