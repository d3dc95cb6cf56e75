"""A Keras-style model summary: layer, type, output shape, parameters, MACs; totals.

The model is traced abstractly (`jax.eval_shape`), so summaries of large models allocate nothing.
During the trace every module call is recorded with its output shape; MACs come from the leaf
layers that do multiply-adds (`nnx.Linear`, `nnx.Conv`, `nnx.ConvTranspose`, `nnx.Einsum`) and
from any module defining `macs(inputs, output) -> int` (e.g. attention's score and value products).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from math import prod

import jax
from flax import nnx

from jaxdl.bench import flops as F
from jaxdl.functional import count_params, named_leaves, split


@dataclass
class Row:
    path: str
    type: str
    output_shape: tuple
    params: int = 0
    macs: int = 0  # of this call, including children
    calls: int = 1


@dataclass
class Summary:
    name: str
    input_shape: tuple
    rows: list[Row] = field(default_factory=list)
    trainable: int = 0
    non_trainable: int = 0
    macs: int = 0

    @property
    def total(self) -> int:
        return self.trainable + self.non_trainable


def _shape_of(tree):
    leaves = jax.tree.leaves(tree)
    if len(leaves) == 1:
        return tuple(leaves[0].shape)
    return tuple(tuple(x.shape) for x in leaves)


def _leaf_macs(module, args, out) -> int:
    if hasattr(module, "macs") and callable(module.macs):
        return int(module.macs(args, out))
    if isinstance(module, nnx.Linear):
        return F.dense_macs(out.shape[:-1], module.in_features, module.out_features)
    if isinstance(module, nnx.Conv):
        return F.conv_macs(out.shape, module.kernel.shape)
    if isinstance(module, nnx.ConvTranspose):
        x = args[0]
        return prod(x.shape) * prod(module.kernel.shape[:-2]) * module.kernel.shape[-1]
    if isinstance(module, nnx.Einsum):
        # MACs of an einsum = product of the sizes of every distinct index
        spec = module.einsum_str.replace(" ", "")
        ins, outs = spec.split("->")
        a, b = ins.split(",")
        if "..." in a:  # the batch-like leading axes, one fresh letter each
            a = a.replace("...", "ABCDEFGHIJ"[: args[0].ndim - (len(a) - 3)])
        sizes = dict(zip(a, args[0].shape, strict=False)) | dict(zip(b, module.kernel.shape, strict=False))
        return prod(sizes.values())
    return 0


@contextlib.contextmanager
def _record_calls(model: nnx.Module, records: list):
    """Patch __call__ of every module class in `model` to record (module, args, output)."""
    classes = {type(m) for _, m in nnx.iter_modules(model)}
    originals = {}
    depth = [0]

    def wrap(cls, orig):
        def __call__(self, *args, **kwargs):
            entry = [self, args, None, depth[0]]
            records.append(entry)
            depth[0] += 1
            try:
                out = orig(self, *args, **kwargs)
            finally:
                depth[0] -= 1
            entry[2] = out
            return out

        return __call__

    # patch the class that defines __call__ (a subclass may inherit it, e.g. from ConvNet)
    owners = {next((k for k in cls.__mro__ if "__call__" in k.__dict__), None) for cls in classes}
    for cls in owners - {None, object}:
        originals[cls] = cls.__dict__["__call__"]
        cls.__call__ = wrap(cls, originals[cls])
    try:
        yield
    finally:
        for cls, orig in originals.items():
            cls.__call__ = orig


def summarize(model: nnx.Module, x, *, name: str = "model") -> Summary:
    """Trace `model(x)` abstractly (x: array or ShapeDtypeStruct [B, ...]) and tabulate it."""
    graphdef, params, state = split(model)
    trainable = count_params(params)
    non_trainable = count_params(nnx.filter_state(state, nnx.Not(nnx.RngState)))
    own_params = {}
    for path, n in _params_per_module(params).items():
        own_params[path] = n
    rows: list[Row] = []

    def run(params, state, x):
        m = nnx.merge(graphdef, params, state, copy=True)
        paths = {id(mod): "/".join(str(p) for p in path) for path, mod in nnx.iter_modules(m)}
        records: list = []
        with _record_calls(m, records):
            out = m(x, train=False)
        # leaf MACs: modules that made no recorded sub-call count their own
        for _i, (mod, args, out_i, depth) in enumerate(records):
            path = paths.get(id(mod), "?")
            rows.append(
                (path, type(mod).__name__, _shape_of(out_i), depth, _leaf_macs(mod, args, out_i))
            )
        return out

    jax.eval_shape(run, params, state, x)
    # a module's MACs: its own (leaf) MACs plus those of calls nested under its path
    by_path: dict[str, Row] = {}
    order: list[str] = []
    leaf_macs: dict[str, int] = {}
    for path, typ, shape, _depth, macs in rows:
        leaf_macs[path] = leaf_macs.get(path, 0) + macs
        if path in by_path:
            by_path[path].calls += 1
            continue
        by_path[path] = Row(path or "(model)", typ, shape, params=_subtree_params(own_params, path))
        order.append(path)
    for path in order:
        prefix = path + "/" if path else ""
        by_path[path].macs = sum(
            v for p, v in leaf_macs.items() if p == path or p.startswith(prefix)
        )
    s = Summary(name, tuple(x.shape), [by_path[p] for p in order], trainable, non_trainable)
    s.macs = by_path[""].macs if "" in by_path else sum(leaf_macs.values())
    return s


def _params_per_module(params) -> dict[str, int]:
    out = {}
    for name, leaf in named_leaves(params).items():
        out[name] = int(prod(leaf.shape))
    return out


def _subtree_params(own: dict[str, int], path: str) -> int:
    if not path:
        return sum(own.values())
    prefix = path + "/"
    return sum(n for p, n in own.items() if p.startswith(prefix))


def render(summary: Summary, *, max_depth: int | None = None, console=None) -> None:
    """Print the summary as a rich table (rows deeper than `max_depth` folded into parents)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console(highlight=False)
    t = Table(title=f"{summary.name}  input {summary.input_shape}", show_lines=False)
    t.add_column("layer", overflow="fold")
    t.add_column("type")
    t.add_column("output shape")
    t.add_column("params", justify="right")
    t.add_column("MACs", justify="right")
    for r in summary.rows:
        depth = 0 if r.path == "(model)" else r.path.count("/") + 1
        if max_depth is not None and depth > max_depth:
            continue
        t.add_row(r.path, r.type, str(r.output_shape), f"{r.params:,}", f"{r.macs:,}")
    console.print(t)
    console.print(
        f"Total params: {summary.total:,}   Trainable params: {summary.trainable:,}   "
        f"Non-trainable params: {summary.non_trainable:,}"
    )
    console.print(
        f"Total MACs: {summary.macs:,} ({summary.macs / 1e9:.3f} GMACs; "
        f"FLOPs = 2 x MACs = {2 * summary.macs / 1e9:.3f} GFLOPs) for batch {summary.input_shape[0]}"
    )
