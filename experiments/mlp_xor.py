"""XOR, which no perceptron learns, solved by a 2-4-1 MLP with tanh hidden units and a sigmoid
output trained with binary cross-entropy and full-batch gradient descent; the loss and
accuracy curves go to --out (curves.png).

    python experiments/mlp_xor.py [--epochs 500] [--lr 0.5]
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import numpy as np
import tyro
from flax import nnx

from jaxdl import create_model
from jaxdl.parallel import make_mesh
from jaxdl.train import Trainer
from jaxdl.viz import save_run_pictures


@dataclass(frozen=True)
class Config:
    epochs: int = 500
    lr: float = 0.5
    hidden: int = 4
    optimizer: str = "sgd"
    seed: int = 0
    smoke: bool = False
    out: str = "runs/mlp_xor"
    """Run directory for the pictures."""


def main(cfg: Config) -> dict:
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    y = np.array([0, 1, 1, 0], np.int32)
    model = create_model("mlp_xor", hidden=(cfg.hidden,), rngs=nnx.Rngs(cfg.seed))
    # 4 examples: full-batch gradient descent on one device
    t = Trainer(
        model,
        optimizer=cfg.optimizer,
        learning_rate=cfg.lr,
        seed=cfg.seed,
        mesh=make_mesh(num_devices=1),
    )
    h = t.fit(
        (x, y), epochs=cfg.epochs if not cfg.smoke else 300, batch_size=4, verbose=0, shuffle=False
    )
    p = np.asarray(jax.nn.sigmoid(t.predict(x)))[:, 0]
    for xi, yi, pi in zip(x, y, p, strict=False):
        print(f"x = {xi.astype(int).tolist()}  d = {yi}  p(1) = {pi:.3f}  y = {int(pi > 0.5)}")
    acc = float(((p > 0.5) == y).mean())
    print(f"final loss {h.history['loss'][-1]:.4f}, accuracy {acc:.2f}")
    save_run_pictures(cfg.out, h, title=f"2-{cfg.hidden}-1 MLP on XOR ({cfg.optimizer})")
    return {"accuracy": acc, "loss": h.history["loss"][-1]}


if __name__ == "__main__":
    main(tyro.cli(Config))
