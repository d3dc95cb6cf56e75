from jaxdl.bench.flops import attention_macs, conv_macs, dense_macs, xla_flops
from jaxdl.bench.summary import Summary, render, summarize, summary

__all__ = [
    "attention_macs",
    "conv_macs",
    "dense_macs",
    "xla_flops",
    "Summary",
    "render",
    "summarize",
    "summary",
]
