"""Optimizers, schedules, clipping and regularisers over optax (docs/design.md, decision 6).

`make_optimizer` wraps the whole chain in `optax.inject_hyperparams`, so the current learning rate
is readable (and writable, for ReduceLROnPlateau) at `opt_state.hyperparams['learning_rate']`.
Defaults are Keras 3's, which the course quotes (Adam: beta1 0.9, beta2 0.999, eps 1e-7).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax

from jaxdl.errors import JaxdlError, check_int, check_positive, compile_pattern, unknown_name
from jaxdl.functional import named_leaves, path_str


def _sgd(lr, momentum=0.0, nesterov=False, **_):
    return optax.sgd(lr, momentum=momentum or None, nesterov=nesterov)


# name -> (builder(lr, **options), Keras defaults)
_OPTIMIZERS = {
    "sgd": (_sgd, dict(momentum=0.0)),
    "momentum": (_sgd, dict(momentum=0.9)),
    "nesterov": (
        lambda lr, momentum, **_: optax.sgd(lr, momentum=momentum, nesterov=True),
        dict(momentum=0.9),
    ),
    "adagrad": (
        lambda lr, eps, initial_accumulator_value, **_: optax.adagrad(
            lr, initial_accumulator_value=initial_accumulator_value, eps=eps
        ),
        dict(eps=1e-7, initial_accumulator_value=0.1),
    ),
    "adadelta": (
        lambda lr, rho, eps, **_: optax.adadelta(lr, rho=rho, eps=eps),
        dict(rho=0.95, eps=1e-7),
    ),
    # Keras adds eps outside the square root: g / (sqrt(v) + eps)
    "rmsprop": (
        lambda lr, rho, eps, momentum, **_: optax.rmsprop(
            lr, decay=rho, eps=eps, momentum=momentum or None, eps_in_sqrt=False
        ),
        dict(rho=0.9, eps=1e-7, momentum=0.0),
    ),
    "adam": (
        lambda lr, b1, b2, eps, **_: optax.adam(lr, b1=b1, b2=b2, eps=eps),
        dict(b1=0.9, b2=0.999, eps=1e-7),
    ),
    "adamw": (
        lambda lr, b1, b2, eps, weight_decay, **_: optax.adamw(
            lr, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay
        ),
        dict(b1=0.9, b2=0.999, eps=1e-7, weight_decay=0.004),
    ),
}
OPTIMIZERS = tuple(_OPTIMIZERS)
SCHEDULES = ("constant", "cosine", "warmup_cosine", "exponential", "step", "linear")


def make_schedule(
    name: str,
    learning_rate: float,
    *,
    total_steps: int | None = None,
    warmup_steps: int = 0,
    decay_rate: float = 0.96,
    decay_steps: int = 1000,
    boundaries: dict[int, float] | None = None,
    end_value: float = 0.0,
) -> optax.Schedule:
    """A learning-rate schedule by name:

    constant; cosine / warmup_cosine (linear warm-up, cosine decay to `end_value` at `total_steps`);
    exponential (lr * decay_rate ** (step / decay_steps), Keras's ExponentialDecay);
    step (piecewise constant: `boundaries` maps step -> multiplicative factor); linear (to
    end_value)."""
    check_positive("learning_rate", learning_rate)
    check_int("warmup_steps", warmup_steps, low=0)
    if total_steps is not None:
        check_int("total_steps", total_steps, low=0)
    if name == "constant":
        return optax.constant_schedule(learning_rate)
    if name in ("cosine", "warmup_cosine", "linear"):
        if not total_steps:
            raise JaxdlError(f"schedule {name!r} needs total_steps (got {total_steps!r})")
        if name == "linear":
            return optax.linear_schedule(learning_rate, end_value, total_steps)
        return optax.warmup_cosine_decay_schedule(
            0.0 if warmup_steps else learning_rate,
            learning_rate,
            warmup_steps,
            max(total_steps, warmup_steps + 1),
            end_value,
        )
    if name == "exponential":
        return optax.exponential_decay(learning_rate, decay_steps, decay_rate)
    if name == "step":
        return optax.piecewise_constant_schedule(learning_rate, boundaries or {})
    raise unknown_name("schedule", name, SCHEDULES)


def scale_learning_rate(
    base_lr: float, batch_size: int, base_batch_size: int = 256, rule: str = "linear"
) -> float:
    """LR scaling with batch size: linear (Goyal et al., 2017) or sqrt (Krizhevsky, 2014)."""
    ratio = batch_size / base_batch_size
    if rule == "linear":
        return base_lr * ratio
    if rule == "sqrt":
        return base_lr * ratio**0.5
    raise unknown_name("scaling rule", rule, ["linear", "sqrt"])


def make_optimizer(
    name: str = "adam",
    learning_rate: float | optax.Schedule = 1e-3,
    *,
    clip_norm: float | None = None,
    clip_value: float | None = None,
    **options,
) -> optax.GradientTransformation:
    """An optax optimizer by name, Keras defaults, optional gradient clipping (by global norm or
    by value, applied before the update). `learning_rate` is a number or an optax schedule.

    Extra keyword options override the defaults (momentum, nesterov, b1, b2, eps, rho,
    weight_decay, initial_accumulator_value)."""
    if name not in _OPTIMIZERS:
        raise unknown_name("optimizer", name, _OPTIMIZERS)
    if not callable(learning_rate):
        check_positive("learning_rate", learning_rate)
    # a negative clip would flip the gradient (gradient ascent); zero would stop training
    if clip_norm is not None:
        check_positive("clip_norm", clip_norm)
    if clip_value is not None:
        check_positive("clip_value", clip_value)
    builder, defaults = _OPTIMIZERS[name]
    bad = set(options) - set(defaults) - {"nesterov"}
    if bad:
        raise JaxdlError(
            f"optimizer {name!r}: unknown option(s) {sorted(bad)}; "
            f"expected some of {sorted(defaults)}"
        )
    opts = {**defaults, **options}

    def chain(learning_rate):
        parts = []
        if clip_value is not None:
            parts.append(optax.clip(clip_value))
        if clip_norm is not None:
            parts.append(optax.clip_by_global_norm(clip_norm))
        parts.append(builder(learning_rate, **opts))
        return optax.chain(*parts)

    return optax.inject_hyperparams(chain)(learning_rate=learning_rate)


def current_learning_rate(opt_state) -> jax.Array | None:
    """The learning rate in force, found in the (possibly wrapped) injected-hyperparams state."""
    found = []

    def visit(node):
        if isinstance(node, optax.InjectHyperparamsState) or (
            hasattr(node, "hyperparams") and isinstance(node.hyperparams, dict)
        ):
            if "learning_rate" in node.hyperparams:
                found.append(node.hyperparams["learning_rate"])
                return
        if isinstance(node, (tuple, list)):
            for child in node:
                visit(child)
        elif hasattr(node, "inner_state"):
            visit(node.inner_state)
        elif hasattr(node, "inner_opt_state"):  # optax.MultiSteps (gradient accumulation)
            visit(node.inner_opt_state)
        elif hasattr(node, "inner_states"):
            for child in node.inner_states.values():
                visit(child)

    visit(opt_state)
    return found[0] if found else None


def set_learning_rate(opt_state, value: float):
    """`opt_state` with every injected 'learning_rate' hyperparameter set to `value` (same dtype
    and placement). A pure function of the state: the Trainer stores the result."""

    def visit(node):
        # optax.inject_hyperparams' state (InjectStatefulHyperparamsState in recent optax)
        if (
            isinstance(getattr(node, "hyperparams", None), dict)
            and "learning_rate" in node.hyperparams
        ):
            old = node.hyperparams["learning_rate"]
            new = jax.device_put(jnp.asarray(value, old.dtype), getattr(old, "sharding", None))
            return node._replace(hyperparams={**node.hyperparams, "learning_rate": new})
        if isinstance(node, tuple) and hasattr(node, "_fields"):
            return node._replace(**{f: visit(getattr(node, f)) for f in node._fields})
        if isinstance(node, (tuple, list)):
            return type(node)(visit(c) for c in node)
        if isinstance(node, dict):
            return {k: visit(v) for k, v in node.items()}
        return node

    return visit(opt_state)


def param_groups(tx: optax.GradientTransformation, params, groups) -> optax.GradientTransformation:
    """Per-group learning rates: `groups` maps regexes on 'layers/0/kernel'-style names to a
    learning-rate multiplier (the first matching pattern wins; unmatched params get 1.0). A
    multiplier of 0 freezes: `optax.set_to_zero`, which allocates no optimizer state (and, wrapping
    the whole chain, no weight decay). Others run `tx` followed by `optax.scale(m)`, which is the
    learning rate times m for every optimizer here (their updates are linear in the rate).
    A pattern that matches no parameter is an error (it is almost always a typo)."""
    groups = dict(groups)
    rx = [(compile_pattern(p, "parameter pattern"), float(m)) for p, m in groups.items()]
    names = list(named_leaves(params))
    for pat, (r, m) in zip(groups, rx, strict=False):
        if m < 0:
            raise JaxdlError(f"learning-rate multiplier for {pat!r} must be >= 0, got {m}")
        if not any(r.search(n) for n in names):
            kind = "freeze" if m == 0 else "learning-rate"
            raise JaxdlError(
                f"{kind} pattern {pat!r} matches no parameter; names look like "
                f"{', '.join(names[:6])}{', ...' if len(names) > 6 else ''}"
            )

    def label(path, _):
        name = path_str(path)
        return next((f"x{m:g}" for r, m in rx if r.search(name)), "x1")

    labels = jax.tree_util.tree_map_with_path(label, params)
    used = set(jax.tree.leaves(labels))
    transforms = {}
    for lab in used:
        m = float(lab[1:])
        transforms[lab] = (
            optax.set_to_zero() if m == 0 else tx if m == 1 else optax.chain(tx, optax.scale(m))
        )
    return optax.partition(transforms, labels)


def freeze(tx: optax.GradientTransformation, params, patterns) -> optax.GradientTransformation:
    """`tx` for the params whose name matches none of the regexes `patterns`; the others are
    frozen (`param_groups` with multiplier 0: zero updates, no optimizer state)."""
    return param_groups(tx, params, {p: 0.0 for p in patterns})


def fine_tune_patterns(
    params, block: str, top: int, *, prefix: str = "", keep_trainable: Sequence[str] = ()
) -> list[str]:
    """Freeze patterns for "unfreeze the top N blocks": every param under `prefix` (e.g.
    'backbone/') is frozen except those of the last `top` blocks and those matching a regex of
    `keep_trainable` (e.g. DenseNet's final r'^backbone/norm/'). `block` is a regex whose match
    in a name (after `prefix`) identifies its block, e.g. r'^stages/\\d+/\\d+' for ResNet;
    blocks are ordered by their numbers."""
    if top < 0:
        raise JaxdlError(f"top must be >= 0, got {top}")
    rx = re.compile(block)
    names = [n[len(prefix) :] for n in named_leaves(params) if n.startswith(prefix)]
    blocks = sorted({m.group(0) for n in names if (m := rx.search(n))}, key=_natural)
    if not blocks:
        raise JaxdlError(f"block pattern {block!r} matches no parameter under {prefix!r}")
    trainable = set(blocks[len(blocks) - top :]) if top else set()
    keep = [re.compile(k) for k in keep_trainable]
    frozen_blocks = [b for b in blocks if b not in trainable]
    pats = [rf"^{re.escape(prefix + b)}/" for b in frozen_blocks]
    for n in names:
        if not rx.search(n) and not any(k.search(prefix + n) for k in keep):
            pats.append(rf"^{re.escape(prefix + n)}$")
    return pats


def _natural(s: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


@dataclass(frozen=True)
class Regularizer:
    """L1/L2 penalty l1 * sum|w| + l2 * sum w^2 over the params whose path matches `pattern`
    (a regex on 'layers/0/kernel'-style paths). Keras's kernel_regularizer is
    Regularizer(l2=..., pattern=r'kernel$'); bias_regularizer uses r'bias$'."""

    l1: float = 0.0
    l2: float = 0.0
    pattern: str = r"kernel$"

    def __call__(self, params) -> jax.Array:
        rx = re.compile(self.pattern)
        total = jnp.zeros((), jnp.float32)
        for name, leaf in named_leaves(params).items():
            if rx.search(name):
                leaf = leaf.astype(jnp.float32)
                if self.l1:
                    total += self.l1 * jnp.sum(jnp.abs(leaf))
                if self.l2:
                    total += self.l2 * jnp.sum(jnp.square(leaf))
        return total


def regularization_penalty(params, regularizers) -> jax.Array:
    return sum((r(params) for r in regularizers), jnp.zeros((), jnp.float32))
