"""`jaxdl bench --compare torch`: the same architecture in PyTorch, measured in the same run.

Where the reference comes from, in order: torchvision (`TORCHVISION`), timm (`TIMM`), or a
reference written here for the benchmark (the MLP, the decoder-only GPT and the recurrent
language models on cuDNN's `nn.LSTM` / `nn.GRU`). PyTorch runs the way it runs fastest:
channels-last memory format for images, `torch.autocast` to bf16 over fp32 parameters (the same
recipe as jaxdl's bf16 mode), `torch.compile`, cuDNN autotuning, TF32 matmuls in fp32 (what
JAX's default precision does on Ampere and later), a fused AdamW on CUDA. The step is timed like
jaxdl's (jaxdl.bench.timing.time_steps, `torch.cuda.synchronize` as the block); the first step,
which includes torch.compile's compilation, is reported as the compile time.

PyTorch is optional: without it `require_torch` raises a JaxdlError that says how to install it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jaxdl.bench.timing import StepTimes, time_steps
from jaxdl.errors import JaxdlError

TORCH_MISSING = (
    "--compare torch needs PyTorch, which is not installed in this environment "
    "(pip install torch, and torchvision / timm for the CNN and ViT references)"
)

# jaxdl name -> (torchvision.models builder, keyword options). Options keep the architecture the
# one jaxdl registers: GoogLeNet's auxiliary heads are active in training (as in jaxdl),
# Inception-v3's is not (the published count is without it).
TORCHVISION: dict[str, tuple[str, dict]] = {
    **{
        n: (n, {})
        for n in (
            "alexnet",
            "resnet18",
            "resnet34",
            "resnet50",
            "resnet101",
            "resnet152",
            "resnext50_32x4d",
            "resnext101_32x8d",
            "vgg11",
            "vgg13",
            "vgg16",
            "vgg19",
            "vgg11_bn",
            "vgg13_bn",
            "vgg16_bn",
            "vgg19_bn",
            "densenet121",
            "densenet169",
            "densenet201",
            "mobilenet_v2",
            "mobilenet_v3_small",
            "mobilenet_v3_large",
        )
    },
    **{f"efficientnet_b{i}": (f"efficientnet_b{i}", {}) for i in range(8)},
    "googlenet": ("googlenet", {"aux_logits": True, "init_weights": True}),
    "inception_v3": ("inception_v3", {"aux_logits": False, "init_weights": True}),
    "vit_b16": ("vit_b_16", {}),
    "vit_l16": ("vit_l_16", {}),
}

# jaxdl name -> timm model name, for what torchvision lacks (or when only timm is installed).
TIMM: dict[str, str] = {
    "seresnet50": "seresnet50",
    "xception": "legacy_xception",
    "inception_resnet_v2": "inception_resnet_v2",
    "mobilenet_v1": "mobilenetv1_100",
    "vit_ti16": "vit_tiny_patch16_224",
    "vit_s16": "vit_small_patch16_224",
    "vit_b16": "vit_base_patch16_224",
    "vit_l16": "vit_large_patch16_224",
    "resnet50": "resnet50",
    "densenet121": "densenet121",
    "efficientnet_b0": "efficientnet_b0",
}

RNN_LMS = {"rnn_lm": "rnn", "lstm_lm": "lstm", "gru_lm": "gru"}
GPTS = ("gpt2", "gpt_mini")


def require_torch():
    """The torch module, or a JaxdlError saying it is not installed."""
    try:
        import torch
    except ImportError as e:
        raise JaxdlError(TORCH_MISSING) from e
    return torch


def _field(config, *names, default=None, required: bool = True):
    """The first config field among `names` (config layouts differ between families)."""
    for n in names:
        if hasattr(config, n):
            return getattr(config, n)
    if not required:
        return default
    raise JaxdlError(
        f"cannot build the PyTorch reference: {type(config).__name__} has none of the "
        f"fields {', '.join(names)}"
    )


# ---- references written for the benchmark ---------------------------------------------------


def mlp_reference(config):
    """jaxdl's MLP (jaxdl.models.mlp) in PyTorch: flatten, (Linear, [BN], act, [dropout]) per
    hidden width, Linear head. Keras BN momentum 0.99 is PyTorch momentum 0.01."""
    torch = require_torch()
    nn = torch.nn
    acts = {
        "relu": nn.ReLU,
        "tanh": nn.Tanh,
        "sigmoid": nn.Sigmoid,
        "gelu": nn.GELU,
        "elu": nn.ELU,
        "selu": nn.SELU,
        "silu": nn.SiLU,
        "swish": nn.SiLU,
        "linear": nn.Identity,
        "leaky_relu": nn.LeakyReLU,
        "softplus": nn.Softplus,
    }
    if config.activation not in acts:
        raise JaxdlError(f"no PyTorch reference for an MLP with activation {config.activation!r}")
    layers: list = [nn.Flatten()]
    n = math.prod(config.input_shape)
    for width in config.hidden:
        layers.append(nn.Linear(n, width, bias=config.use_bias))
        if config.batch_norm:
            layers.append(nn.BatchNorm1d(width, eps=1e-3, momentum=0.01))
        layers.append(acts[config.activation]())
        if config.dropout:
            layers.append(nn.Dropout(config.dropout))
        n = width
    layers.append(nn.Linear(n, config.num_classes))
    return nn.Sequential(*layers)


def gpt_reference(config):
    """A GPT-2 style decoder (Radford et al. 2019): token + learned position embeddings, pre-LN
    blocks of causal self-attention (F.scaled_dot_product_attention, which picks the flash /
    cuDNN kernel on GPU) and a GELU MLP, final LayerNorm, output projection tied to the token
    embedding. [B, T] int64 -> [B, T, vocab]."""
    torch = require_torch()
    nn, F = torch.nn, torch.nn.functional
    vocab = _field(config, "vocab_size", "vocab")
    d = _field(config, "d_model", "n_embd", "embed_dim", "width", "hidden_size", "dim")
    n_layers = _field(config, "num_layers", "n_layer", "n_layers", "depth", "layers")
    heads = _field(config, "num_heads", "n_head", "n_heads", "heads")
    d_ff = _field(config, "mlp_dim", "d_ff", "ff_dim", "hidden_dim", required=False) or 4 * d
    ctx = (
        _field(
            config, "context", "max_len", "context_length", "block_size", "n_ctx", required=False
        )
        or config.input_shape[0]
    )

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.fc, self.out = nn.Linear(d, d_ff), nn.Linear(d_ff, d)

        def forward(self, x):
            b, t, _ = x.shape
            q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
            return x + self.out(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(ctx, d)
            self.blocks = nn.ModuleList(Block() for _ in range(n_layers))
            self.ln_f = nn.LayerNorm(d)

        def forward(self, idx):
            pos = torch.arange(idx.shape[1], device=idx.device)
            x = self.tok(idx) + self.pos(pos)
            for blk in self.blocks:
                x = blk(x)
            return self.ln_f(x) @ self.tok.weight.t()  # tied output projection

    return GPT()


def rnn_layer_reference(cell: str, input_size: int, hidden: int, num_layers: int = 1):
    """cuDNN's recurrent layer: nn.LSTM / nn.GRU / nn.RNN (tanh), batch-first,
    [B, T, input_size] -> [B, T, hidden] (the sequence output; the final state is dropped)."""
    torch = require_torch()
    classes = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}
    if cell not in classes:
        raise JaxdlError(f"unknown recurrent cell {cell!r}; expected one of {', '.join(classes)}")

    class Layer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = classes[cell](input_size, hidden, num_layers=num_layers, batch_first=True)

        def forward(self, x):
            return self.rnn(x)[0]

    return Layer()


def rnn_lm_reference(config, cell: str):
    """Embedding -> stacked cuDNN recurrent layer -> Linear to the vocabulary:
    [B, T] -> [B, T, V]."""
    torch = require_torch()
    nn = torch.nn
    vocab = _field(config, "vocab_size", "vocab")
    embed = _field(config, "embed_dim", "embedding_dim", "embed", "d_embed")
    hidden = _field(config, "hidden", "hidden_size", "units", "hidden_units")
    sizes = tuple(hidden) if isinstance(hidden, (tuple, list)) else None
    n_layers = len(sizes) if sizes else _field(config, "num_layers", "layers", required=False) or 1
    if sizes and len(set(sizes)) != 1:
        raise JaxdlError(f"the PyTorch reference stacks equal widths; the config has {sizes}")
    width = sizes[0] if sizes else hidden
    rnn = rnn_layer_reference(cell, embed, width, n_layers)
    return nn.Sequential(nn.Embedding(vocab, embed), rnn, nn.Linear(width, vocab))


# ---- building a reference --------------------------------------------------------------------


def build_reference(name: str, config) -> tuple[Any, str]:
    """(torch module, where it came from) for the registered model `name` with `config`."""
    require_torch()
    if name == "mlp" or type(config).__name__ == "MLPConfig":
        return mlp_reference(config), "reference (jaxdl.bench.compare.mlp_reference)"
    if name in GPTS:
        return gpt_reference(config), "reference (jaxdl.bench.compare.gpt_reference)"
    if name in RNN_LMS:
        cell = getattr(config, "cell", RNN_LMS[name])
        return rnn_lm_reference(config, cell), f"reference (cuDNN nn.{cell.upper()})"
    num_classes = getattr(config, "num_classes", 1000)
    shape = tuple(config.input_shape)
    tried = []
    if name in TORCHVISION:
        try:
            import torchvision
        except ImportError:
            tried.append("torchvision (not installed)")
        else:
            builder, opts = TORCHVISION[name]
            if name.startswith("vit"):
                opts = {**opts, "image_size": shape[0]}
            return (
                getattr(torchvision.models, builder)(num_classes=num_classes, **opts),
                f"torchvision.models.{builder}",
            )
    if name in TIMM:
        try:
            import timm
        except ImportError:
            tried.append("timm (not installed)")
        else:
            opts = {"img_size": shape[0]} if name.startswith("vit") else {}
            return (
                timm.create_model(TIMM[name], num_classes=num_classes, **opts),
                f"timm {TIMM[name]}",
            )
    where = "; tried " + ", ".join(tried) if tried else ""
    raise JaxdlError(f"no PyTorch reference for {name!r}{where}")


@dataclass(frozen=True)
class TorchResult:
    source: str
    params: int
    first_step_s: float  # the first step, which includes torch.compile's compilation
    times: StepTimes
    peak_memory_bytes: int | None


def torch_inputs(config, batch: int, device):
    """Synthetic input like jaxdl.models.inputs.example_input, in PyTorch's layout: images
    (H, W, C) -> [B, C, H, W] channels-last; token ids [B, T] int64; features [B, ...]."""
    torch = require_torch()
    shape = tuple(config.input_shape)
    if str(getattr(config, "input_dtype", "float32")).startswith("int"):
        vocab = _field(config, "vocab_size", "vocab", required=False) or 2
        return torch.randint(0, vocab, (batch, *shape), device=device)
    if len(shape) == 3:
        h, w, c = shape
        return torch.randn(batch, c, h, w, device=device).to(memory_format=torch.channels_last)
    return torch.randn(batch, *shape, device=device)


def _outputs(out) -> list:
    """Every logits tensor of a model output (GoogLeNet's training output holds three)."""
    if hasattr(out, "_fields"):  # torchvision's GoogLeNetOutputs / InceptionOutputs
        return [o for o in out if o is not None]
    if isinstance(out, (tuple, list)):
        return list(out)
    return [out]


def classification_loss(out, y):
    """Sum of the cross-entropies of every output against y ([B] or [B, T] class ids)."""
    torch = require_torch()
    F = torch.nn.functional
    return sum(
        F.cross_entropy(o.float().reshape(-1, o.shape[-1]), y.reshape(-1)) for o in _outputs(out)
    )


def make_optimizer(params, name: str, lr: float):
    """torch counterpart of jaxdl.train.optim.make_optimizer for the benchmark's optimizers
    (Keras defaults, as jaxdl's): adamw, adam, sgd, momentum."""
    torch = require_torch()
    fused = {"fused": True} if torch.cuda.is_available() else {}
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, eps=1e-7, weight_decay=0.004, **fused)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, eps=1e-7, **fused)
    if name in ("sgd", "momentum"):
        return torch.optim.SGD(params, lr=lr, momentum=0.9 if name == "momentum" else 0.0)
    raise JaxdlError(
        f"--compare torch supports the optimizers adamw, adam, sgd, momentum; got {name!r}"
    )


def bench_module(
    module,
    x,
    *,
    mode: str,
    dtype: str,
    loss_fn: Callable | None = None,
    optimizer: str = "adamw",
    lr: float = 1e-4,
    warmup: int = 3,
    steps: int = 20,
    compile: bool = True,
    source: str = "",
) -> TorchResult:
    """Time `module` on input `x` (already on its device): an inference forward, or a training
    step (forward, `loss_fn(out)`, backward, optimizer step)."""
    torch = require_torch()
    device = x.device
    cuda = device.type == "cuda"
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    module = module.to(device)
    if x.dim() == 4:
        module = module.to(memory_format=torch.channels_last)
    params = sum(p.numel() for p in module.parameters())
    run = torch.compile(module) if compile else module
    autocast = (
        (lambda: torch.autocast(device.type, dtype=torch.bfloat16))
        if dtype == "bf16"
        else (lambda: torch.autocast(device.type, enabled=False))
    )

    if mode == "infer":
        module.eval()

        def step():
            with torch.inference_mode(), autocast():
                return run(x)
    else:
        module.train()
        opt = make_optimizer(module.parameters(), optimizer, lr)

        def step():
            opt.zero_grad(set_to_none=True)
            with autocast():
                loss = loss_fn(run(x))
            loss.backward()
            opt.step()
            return loss

    def block(_):
        if cuda:
            torch.cuda.synchronize(device)

    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    block(step())
    first = time.perf_counter() - t0
    times = time_steps(step, warmup=max(warmup - 1, 0), steps=steps, block=block)
    peak = int(torch.cuda.max_memory_allocated(device)) if cuda else None
    return TorchResult(source, params, first, times, peak)


def bench_registered(
    name: str,
    config,
    *,
    mode: str,
    batch: int,
    dtype: str,
    label_shape=None,
    num_labels: int | None = None,
    **kwargs,
) -> TorchResult:
    """Build the PyTorch reference for the jaxdl model `name` / `config` and time it like
    `bench_module`. Training uses cross-entropy against random labels of `label_shape`
    (without the batch axis) in [0, num_labels)."""
    torch = require_torch()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    module, source = build_reference(name, config)
    torch.manual_seed(0)
    x = torch_inputs(config, batch, device)
    loss_fn = None
    if mode == "train":
        y = torch.randint(0, num_labels or 2, (batch, *(label_shape or ())), device=device)
        loss_fn = lambda out: classification_loss(out, y)
    try:
        return bench_module(
            module, x, mode=mode, dtype=dtype, loss_fn=loss_fn, source=source, **kwargs
        )
    finally:
        del module, x
        if device.type == "cuda":
            torch.cuda.empty_cache()


def torch_version() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.__version__
