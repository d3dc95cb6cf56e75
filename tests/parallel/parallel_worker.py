"""One process of the multi-process test (tests/parallel/test_parallel_multiprocess.py), run as
a script:

    python tests/parallel/parallel_worker.py OUT.npz --devices 4
        [--coordinator H:P --num-processes 2 --process-id I]

Simulates `--devices` CPU devices in this process, joins the run through
`jaxdl.parallel.initialize_distributed`, trains a batch-normalised MLP on digits on a mesh over
every device of every process, data parallel and then FSDP, and writes for each the final
parameters and BatchNorm statistics (gathered whole) and the test metrics, and the FSDP model's
predictions for the test set; with `--ckpt` also a jaxdl checkpoint (jaxdl.train.checkpoint,
written by every process, its digests and NaN check computed on the sharded arrays) of the
final FSDP train state.
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--devices", type=int, required=True)
    ap.add_argument("--coordinator")
    ap.add_argument("--num-processes", type=int)
    ap.add_argument("--process-id", type=int)
    ap.add_argument("--ckpt", help="write the final FSDP state here, all processes together")
    args = ap.parse_args(argv)
    # before jax is imported: the simulated devices of this process
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
    os.environ["JAX_PLATFORMS"] = "cpu"

    import jax
    import numpy as np
    from jax.experimental.multihost_utils import process_allgather

    from jaxdl.data import load_digits
    from jaxdl.functional import named_leaves
    from jaxdl.models import create_model
    from jaxdl.parallel import initialize_distributed, make_mesh
    from jaxdl.train import Trainer

    initialize_distributed(args.coordinator, args.num_processes, args.process_id, timeout=60)
    splits = load_digits(seed=0)
    arrays = {}
    for mode in ("dp", "fsdp"):
        model = create_model("mlp", input_shape=(8, 8, 1), hidden=(64, 32), batch_norm=True)
        trainer = Trainer(
            model, optimizer="sgd", learning_rate=0.1, seed=3, mesh=make_mesh(), fsdp=mode == "fsdp"
        )
        trainer.fit(splits.train, epochs=2, batch_size=64, verbose=0)
        for part in ("params", "model_state"):  # whole arrays on every process, shards joined
            whole = process_allgather(getattr(trainer.state, part), tiled=True)
            arrays.update(
                {f"{mode}/{part}/{k}": np.asarray(v) for k, v in named_leaves(whole).items()}
            )
        arrays.update(
            {f"{mode}/metric/{k}": np.asarray(v) for k, v in trainer.evaluate(splits.test).items()}
        )
    arrays["fsdp/predict"] = trainer.predict(splits.test.x)  # every row, from every process
    if args.ckpt:
        from jaxdl.train.checkpoint import Checkpoints

        # every process writes its own shards; no process holds a whole array
        assert not all(a.is_fully_addressable for a in jax.tree.leaves(trainer.state.params))
        ckpts = Checkpoints(args.ckpt)
        ckpts.save(trainer.step_count, {"state": trainer.state})
        ckpts.wait()
        ckpts.close()
    arrays["devices"] = np.asarray(jax.device_count())
    arrays["processes"] = np.asarray(jax.process_count())
    np.savez(args.out, **arrays)
    return 0


if __name__ == "__main__":
    sys.exit(main())
