"""Analytic multiply-add (MAC) counts of the layers that do them: dense, conv, attention. One
multiply-add counts 1 (torchvision "GFLOPS", timm "GMACs", fvcore); XLA's FLOPs count it as 2
(`jaxdl.bench.flops`). A leaf module: it imports nothing from jaxdl, so layers may use it."""

from __future__ import annotations

from math import prod


def dense_macs(batch_shape, in_features: int, out_features: int) -> int:
    """x [..., in] @ W [in, out]: prod(batch) * in * out."""
    return prod(batch_shape) * in_features * out_features


def conv_macs(out_shape, kernel_shape, groups: int = 1) -> int:
    """Output [B, *spatial, Cout], kernel [*k, Cin/groups, Cout]: each output element costs
    prod(k) * Cin/groups multiply-adds."""
    return prod(out_shape) * prod(kernel_shape[:-1])


def attention_macs(batch: int, heads: int, q_len: int, kv_len: int, head_dim: int) -> int:
    """softmax(QK^T)V: QK^T and (weights)V each cost B * H * Lq * Lk * Dh multiply-adds."""
    return 2 * batch * heads * q_len * kv_len * head_dim
