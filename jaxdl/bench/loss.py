"""The loss of a benchmark training step, picked from the model's output (`ModelIO.loss`)."""

from __future__ import annotations

from jaxdl.train import losses
from jaxdl.train.tasks import Task


class BenchLoss(Task):
    """The loss of a benchmark training step (`ModelIO.loss`); its metrics are only the loss
    sums, so the timed step does what a training step must and nothing more (the PyTorch step
    computes only its loss too)."""

    def __init__(self, kind: str):
        self.kind = kind

    def loss(self, outputs, batch):
        outs = list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]
        main = outs[0]
        if self.kind == "mse":
            return losses.mean_squared_error(main, batch["x"]).reshape(main.shape[0], -1).mean(-1)
        if self.kind == "bce":
            return losses.binary_cross_entropy(main, batch["y"].reshape(main.shape[:-1]))
        # every output of the main output's shape counts (GoogLeNet's auxiliary heads in training)
        per = [
            losses.categorical_cross_entropy(o, batch["y"]) for o in outs if o.shape == main.shape
        ]
        return sum(per[1:], per[0])
