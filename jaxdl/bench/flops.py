"""FLOPs and MACs (docs/design.md, decision 7).

Two conventions, always labelled: MACs count one multiply-add as 1 (torchvision "GFLOPS", timm
"GMACs", fvcore); FLOPs count it as 2 (XLA's `cost_analysis()['flops']`, MFU). Analytic MACs come
from the layers that do the multiply-adds (dense, conv, attention); XLA's count also includes
element-wise work, so it is slightly above 2 x MACs. The per-layer MAC formulas live in
`jaxdl.nn.macs` (a leaf module the layers import) and are re-exported here.
"""

from __future__ import annotations

import jax

from jaxdl.nn.macs import attention_macs, conv_macs, dense_macs

__all__ = [
    "attention_macs",
    "conv_macs",
    "dense_macs",
    "lowered_flops",
    "transformer_training_flops",
    "xla_flops",
]


def xla_flops(fn, *args, **kwargs) -> float:
    """FLOPs of `fn(*args)` from XLA's cost analysis of the lowered (not compiled) program.

    The lowered HLO analysis is backend-independent (compiled analysis on GPU is unreliable: jax
    issues 16008, 20184). Arguments may be ShapeDtypeStructs."""
    return lowered_flops(jax.jit(fn).lower(*args, **kwargs))


def lowered_flops(lowered) -> float:
    """FLOPs of an already lowered program (`jax.jit(f).lower(...)`), e.g. a jitted train step
    whose lowering was also timed (jaxdl.bench.timing.compile_timed)."""
    cost = lowered.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    return float((cost or {}).get("flops", 0.0))


def transformer_training_flops(
    n_params: int, num_layers: int, d_model: int, seq_len: int, tokens: int = 1
) -> float:
    """Training FLOPs (2 per multiply-add) of a decoder-only transformer for `tokens` tokens.

    PaLM's convention (Chowdhery et al., 2022, appendix B): 6 N + 12 L d T per token. 6 N is the
    forward (2 N) plus backward (4 N) matmuls with the N weights (count the weights that multiply:
    exclude position tables, which are added, not multiplied); 12 L d T is QK^T and AV (2 L T d
    multiply-adds forward per token, times 3 for the backward, times 2 FLOPs) over the full T x T
    scores, as computed with a causal mask (not halved)."""
    return float(tokens) * (6.0 * n_params + 12.0 * num_layers * d_model * seq_len)
