"""A Keras-style model summary: layer, type, output shape, parameters, trainable, MACs, memory.

    jaxdl.summary(model)                   # top-level modules (Keras's view); depth=None: all
    s = jaxdl.summary(model, (32, 32, 3), depth=2, print_table=False); s.frontier(2)

The model is traced abstractly (`jax.eval_shape`), so summaries of large models allocate nothing.
During the trace every module call is recorded with its output shape; MACs come from the leaf
layers that do multiply-adds (`nnx.Linear`, `nnx.Conv`, `nnx.ConvTranspose`, `nnx.Einsum`) and
from any module defining `macs(inputs, output) -> int` (e.g. attention's score and value products).
Every module of the tree gets a row, containers that are never called themselves (a list of
stages) included, and so does every variable held directly by a module with children, so the
rows a view at any depth ends on add up to the totals.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from math import prod

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.bench import flops as F
from jaxdl.errors import JaxdlError
from jaxdl.functional import named_leaves, split


@dataclass
class Row:
    path: str  # '(model)' for the model itself
    type: str
    output_shape: tuple | None  # None: not called in the trace (e.g. a training-only head)
    params: int = 0  # every variable of the subtree but RNG state (Keras's Param #)
    macs: int = 0  # of this module's calls, its children's included
    calls: int = 1
    trainable: int = 0  # of `params`, those an optimizer updates (nnx.Param, not frozen)
    bytes: int = 0  # memory of the subtree's variables
    depth: int = 0  # path components: 'stages' 1, 'stages/0' 2; the model 0
    leaf: bool = True  # no row below it

    @property
    def trainable_flag(self) -> str:
        if self.params == 0:
            return ""
        return "yes" if self.trainable == self.params else "no" if not self.trainable else "part"


@dataclass
class Summary:
    name: str
    input_shape: tuple
    rows: list[Row] = field(default_factory=list)  # rows[0]: the model
    trainable: int = 0
    non_trainable: int = 0
    macs: int = 0
    bytes: int = 0
    frozen: int = 0  # nnx.Param values matched by `freeze` (counted in non_trainable)

    @property
    def total(self) -> int:
        return self.trainable + self.non_trainable

    @property
    def output_shape(self):
        return self.rows[0].output_shape if self.rows else None

    def max_depth(self) -> int:
        return max((r.depth for r in self.rows), default=0)

    def frontier(self, depth: int) -> list[Row]:
        """The rows a view at `depth` ends on: those at that depth and the shallower leaves. Their
        params, trainable counts and bytes add up to the totals, and so do their MACs except
        where a parent computes something itself (GPT's tied head, `wte.attend`)."""
        return [r for r in self.rows[1:] if r.depth == depth or (r.depth < depth and r.leaf)]

    def __str__(self) -> str:
        import io

        from rich.console import Console

        buf = io.StringIO()
        render(self, max_depth=None, console=Console(file=buf, width=220, highlight=False))
        return buf.getvalue()


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
        sizes = dict(zip(a, args[0].shape, strict=False)) | dict(
            zip(b, module.kernel.shape, strict=False)
        )
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


def _variables(params, state, freeze) -> dict[str, tuple]:
    """name -> (count, bytes, trainable, type name, frozen) for every variable but RNG state."""
    pattern = re.compile("|".join(f"(?:{p})" for p in freeze)) if freeze else None
    out = {}
    nonrng = nnx.filter_state(state, nnx.Not(nnx.RngState))
    for tree, trainable in ((params, True), (nonrng, False)):
        for name, leaf in named_leaves(tree).items():
            n = int(prod(leaf.shape))
            frozen = bool(trainable and pattern is not None and pattern.match(name))
            kind = "Param" if trainable else "Variable"
            out[name] = (
                n,
                n * jnp.dtype(leaf.dtype).itemsize,
                trainable and not frozen,
                kind,
                frozen,
            )
    return out


def summarize(
    model: nnx.Module, x, *, name: str = "model", freeze: tuple[str, ...] | list[str] = ()
) -> Summary:
    """Trace `model(x)` abstractly (x: array or ShapeDtypeStruct [B, ...]) and tabulate it.
    `freeze`: regexes of parameter names counted as non-trainable (as Trainer(freeze=...))."""
    graphdef, params, state = split(model)
    variables = _variables(params, state, freeze)
    modules = {"/".join(map(str, p)): type(m).__name__ for p, m in nnx.iter_modules(model)}
    records: list = []

    def run(params, state, x):
        m = nnx.merge(graphdef, params, state, copy=True)
        paths = {id(mod): "/".join(map(str, p)) for p, mod in nnx.iter_modules(m)}
        calls: list = []
        with _record_calls(m, calls):
            out = m(x, train=False)
        for mod, args, out_i, _ in calls:
            records.append(
                (paths.get(id(mod), "?"), _shape_of(out_i), _leaf_macs(mod, args, out_i))
            )
        return out

    jax.eval_shape(run, params, state, x)
    first, shape, ncalls, own_macs = {}, {}, {}, {}
    for i, (path, shp, macs) in enumerate(records):
        first.setdefault(path, i)
        shape.setdefault(path, shp)
        ncalls[path] = ncalls.get(path, 0) + 1
        own_macs[path] = own_macs.get(path, 0) + macs
    # each variable's module: the longest module path that prefixes its name
    owner = {}
    for v in variables:
        parts = v.split("/")
        owner[v] = next(
            (
                "/".join(parts[:k])
                for k in range(len(parts) - 1, 0, -1)
                if "/".join(parts[:k]) in modules
            ),
            "",
        )

    def ancestors(p: str):  # p, its parents, ..., '' (the model)
        parts = p.split("/") if p else []
        return ["/".join(parts[:k]) for k in range(len(parts), -1, -1)]

    # one pass over variables and calls, each added to every module above it
    agg = {p: [0, 0, 0, 0, -1] for p in modules}  # params, trainable, bytes, MACs, last call
    for v, (n, b, tr, _, _) in variables.items():
        for p in ancestors(owner[v]):
            a = agg[p]
            a[0], a[1], a[2] = a[0] + n, a[1] + (n if tr else 0), a[2] + b
    for q in first:
        for p in ancestors(q) if q in modules else [""]:
            agg[p][3] += own_macs[q]
            if first[q] > agg[p][4]:
                agg[p][4] = first[q]
    kept = {p for p in modules if not p or agg[p][0] or agg[p][4] >= 0}  # not empty containers
    parents = {a for p in kept if p for a in ancestors(p)[1:]}
    last_path = {i: p for p, i in first.items()}
    rows: dict[str, Row] = {}
    for path in modules:
        if path not in kept:
            continue
        n, tr, b, macs, last = agg[path]
        rows[path] = Row(
            path or "(model)",
            modules[path],
            shape.get(path, shape.get(last_path.get(last)) if path and last >= 0 else None),
            params=n,
            macs=macs,
            calls=ncalls.get(path, 0),
            trainable=tr,
            bytes=b,
            depth=path.count("/") + 1 if path else 0,
            leaf=path not in parents,
        )
    # variables held directly by a module with children (ViT's class token, position embedding)
    for v, (n, b, tr, kind, _) in variables.items():
        if owner[v] in parents:
            depth = rows[owner[v]].depth + 1
            rows[v] = Row(v, kind, None, n, 0, 0, n if tr else 0, b, depth)
    end = len(records) + 1
    earliest: dict[str, int] = {}
    for q, i in first.items():
        for p in ancestors(q) if q in modules else []:
            earliest[p] = min(earliest.get(p, end), i)

    def order(p: str):
        if p in owner:  # a variable row: just before its module's first call
            at = first.get(owner[p], end) - 0.5 if owner[p] else -1
        else:
            at = earliest.get(p, end)
        return (at, rows[p].depth, p)

    ordered = [rows[""]] + [rows[p] for p in sorted((p for p in rows if p), key=order)]
    total = sum(v[0] for v in variables.values())
    trainable = sum(v[0] for v in variables.values() if v[2])
    return Summary(
        name,
        tuple(x.shape),
        ordered,
        trainable,
        total - trainable,
        sum(own_macs.values()),
        sum(v[1] for v in variables.values()),
        sum(v[0] for v in variables.values() if v[4]),
    )


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def render(summary: Summary, *, max_depth: int | None = 1, console=None) -> None:
    """Print the rows down to `max_depth` (None: all; 1: the top-level modules, Keras's view),
    indented by depth, and the totals. Cells never wrap: a console narrower than the table
    crops it (the CLI prints to a pipe at full width)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console(highlight=False)
    t = Table(title=f"{summary.name}  input {summary.input_shape}")
    for col, right in (
        ("layer", False),
        ("type", False),
        ("output shape", False),
        ("params", True),
        ("trainable", False),
        ("MACs", True),
        ("memory", True),
    ):
        t.add_column(col, justify="right" if right else "left", no_wrap=True)
    for r in summary.rows:
        if max_depth is not None and r.depth > max_depth:
            continue
        label = r.path if r.depth == 0 else "  " * (r.depth - 1) + r.path.rsplit("/", 1)[-1]
        t.add_row(
            label,
            r.type,
            "-" if r.output_shape is None else str(r.output_shape),
            f"{r.params:,}",
            r.trainable_flag,
            f"{r.macs:,}",
            _size(r.bytes),
        )
    console.print(t, crop=False)
    frozen = f" (of which frozen: {summary.frozen:,})" if summary.frozen else ""
    console.print(
        f"Total params: {summary.total:,}   Trainable params: {summary.trainable:,}   "
        f"Non-trainable params: {summary.non_trainable:,}{frozen}   "
        f"Memory: {_size(summary.bytes)}",
        crop=False,
    )
    console.print(
        f"Total MACs: {summary.macs:,} ({summary.macs / 1e9:.3f} GMACs; FLOPs = 2 x MACs = "
        f"{2 * summary.macs / 1e9:.3f} GFLOPs) for batch {summary.input_shape[0]}",
        crop=False,
    )


def summary(
    model: nnx.Module,
    input_shape: tuple | None = None,
    *,
    batch: int = 1,
    depth: int | None = 1,
    dtype=None,
    freeze: tuple[str, ...] = (),
    print_table: bool = True,
    console=None,
) -> Summary:
    """`jaxdl.summary(model)`: print a Keras-style table of `model` (its top-level modules;
    depth=2 one level more, depth=None every module) and return the Summary. input_shape: one
    example's shape without the batch (default: the model's `config.input_shape`, with its
    `input_dtype`). Nothing is allocated: the model is traced with jax.eval_shape."""
    from jaxdl.models.inputs import example_input

    config = getattr(model, "config", None)
    if input_shape is None:
        if getattr(config, "input_shape", None) is None:
            raise JaxdlError("summary: pass input_shape for a model without config.input_shape")
        x = example_input(config, batch)
        if dtype is not None:
            x = jax.ShapeDtypeStruct(x.shape, dtype)
    else:
        default = getattr(config, "input_dtype", "float32")
        x = jax.ShapeDtypeStruct((batch, *tuple(input_shape)), jnp.dtype(dtype or default))
    s = summarize(model, x, name=type(model).__name__, freeze=freeze)
    if print_table:
        render(s, max_depth=depth, console=console)
    return s
