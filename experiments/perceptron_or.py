"""The course's perceptron table: OR learned by the delta rule, weights printed after each
observation and each epoch, until an epoch makes no correction. `--gate xor` shows the failure.

    python experiments/perceptron_or.py [--gate and|or|xor] [--eta 0.1] [--max-epochs 20]
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import tyro
from rich.console import Console
from rich.table import Table

from jaxdl import create_model
from jaxdl.models.mlp import train_perceptron
from jaxdl.viz import save_run_pictures

GATES = {"or": [0, 1, 1, 1], "and": [0, 0, 0, 1], "xor": [0, 1, 1, 0]}


@dataclass(frozen=True)
class Config:
    gate: str = "or"
    eta: float = 0.1
    max_epochs: int = 20
    smoke: bool = False
    out: str = "runs/perceptron"
    """Run directory for the pictures."""


def main(cfg: Config) -> dict:
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    d = np.array(GATES[cfg.gate], np.float32)
    p = create_model("perceptron")
    res = train_perceptron(p, x, d, eta=cfg.eta, max_epochs=cfg.max_epochs)
    console = Console(highlight=False)
    t = Table(title=f"perceptron on {cfg.gate.upper()}, eta={cfg.eta}, initial weights 0")
    for c in ("epoch", "x1", "x2", "d", "y", "d - y", "w1", "w2", "b"):
        t.add_column(c, justify="right")
    for e, tr in enumerate(res.trace, start=1):
        for i in range(len(x)):
            t.add_row(
                str(e),
                *(f"{v:g}" for v in x[i]),
                f"{d[i]:g}",
                f"{tr['y'][i, 0]:g}",
                f"{tr['error'][i, 0]:+g}",
                f"{tr['w'][i][0, 0]:.2f}",
                f"{tr['w'][i][1, 0]:.2f}",
                f"{tr['b'][i][0]:.2f}",
                end_section=i == len(x) - 1,
            )
    console.print(t)
    console.print("corrections per epoch:", res.corrections)
    save_run_pictures(
        cfg.out,
        {"corrections": res.corrections},
        title=f"delta rule on {cfg.gate.upper()}, eta={cfg.eta}",
    )
    verdict = "converged" if res.converged else "did NOT converge"
    console.print(
        f"{verdict} after {res.epochs} epoch(s): "
        f"w = {[round(float(v), 3) for v in res.w[:, 0]]}, b = {round(float(res.b[0]), 3)}"
    )
    return {"gate": cfg.gate, "converged": res.converged, "epochs": res.epochs}


if __name__ == "__main__":
    r = main(tyro.cli(Config))
    sys.exit(0 if r["converged"] or r["gate"] == "xor" else 1)
