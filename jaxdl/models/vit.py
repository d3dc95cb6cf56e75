"""Vision Transformer (Dosovitskiy et al., 2021, "An image is worth 16x16 words").

The image [B, H, W, C] is cut into P x P patches, each linearly embedded (`patch_embed`, a
P x P convolution with stride P), a learned class token `cls_token` is prepended, learned
positions `pos_embed` [1 + N, d] added, N pre-LN encoder layers run, and the final-LayerNorm'd
class token goes to the linear `head`. Variants (paper Table 1; Ti and S from DeiT):

    vit_ti16  d 192,  12 layers, 3 heads,  MLP 768
    vit_s16   d 384,  12 layers, 6 heads,  MLP 1536
    vit_b16   d 768,  12 layers, 12 heads, MLP 3072  (86,567,656 parameters, 1000 classes)
    vit_l16   d 1024, 24 layers, 16 heads, MLP 4096

`resize_positions` interpolates the position grid to a new image size (fine-tuning at higher
resolution, paper section 3.2) and `with_image_size` builds the model for that size.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.errors import JaxdlError
from jaxdl.models.registry import register
from jaxdl.nn.shapes import check_input
from jaxdl.nn.transformer import StackDims, TransformerStack
from jaxdl.parallel import logical as L


@dataclass(frozen=True)
class ViTConfig(StackDims):
    input_shape: tuple[int, ...] = (224, 224, 3)
    num_classes: int = 1000
    patch_size: int = 16
    d_ff: int | None = 3072
    dropout: float = 0.0
    ln_eps: float = 1e-6
    head_zero_init: bool = True  # the paper zero-initialises the classifier (appendix B.1.1)

    def grid(self) -> tuple[int, int]:
        h, w = self.input_shape[:2]
        p = self.patch_size
        if h % p or w % p:
            raise JaxdlError(f"vit: image size {h}x{w} is not divisible into {p}x{p} patches")
        return h // p, w // p


class ViT(nnx.Module):
    """images [B, H, W, C] -> logits [B, num_classes]."""

    def __init__(self, config: ViTConfig, *, rngs: nnx.Rngs):
        c = config
        if len(c.input_shape) != 3:
            raise JaxdlError(f"vit: input_shape must be (H, W, C), got {c.input_shape}")
        gh, gw = c.grid()
        self.config = c
        init = nnx.initializers.normal(c.init_std)
        self.patch_embed = nnx.Conv(
            c.input_shape[2],
            c.d_model,
            (c.patch_size, c.patch_size),
            strides=c.patch_size,
            padding="VALID",
            kernel_metadata=L.axes(None, None, None, L.EMBED),
            bias_metadata=L.axes(L.EMBED),
            rngs=rngs,
        )
        self.cls_token = nnx.Param(jnp.zeros((1, 1, c.d_model)), **L.axes(None, None, L.EMBED))
        self.pos_embed = nnx.Param(
            init(rngs.params(), (1 + gh * gw, c.d_model)), **L.axes(L.POSITIONS, L.EMBED)
        )
        self.dropout = nnx.Dropout(c.dropout)
        self.encoder = TransformerStack(
            c.layer(pre_ln=True), c.num_layers, scan=c.scan_layers, rngs=rngs
        )
        self.head = nnx.Linear(
            c.d_model,
            c.num_classes,
            rngs=rngs,
            kernel_init=nnx.initializers.zeros if c.head_zero_init else init,
            kernel_metadata=L.axes(L.EMBED, L.CLASSES),
            bias_metadata=L.axes(L.CLASSES),
        )

    def __call__(self, x, *, train: bool = False, rngs: nnx.Rngs | None = None):
        h, w, _ = self.config.input_shape
        p = self.config.patch_size
        if x.ndim == 4 and (x.shape[1] % p or x.shape[2] % p):
            raise JaxdlError(
                f"vit: image size {x.shape[1]}x{x.shape[2]} is not divisible into {p}x{p} patches"
            )
        check_input(x, self.config.input_shape, model="vit", what="images")
        patches = self.patch_embed(x)  # [B, H/P, W/P, d]
        b = x.shape[0]
        tokens = patches.reshape(b, -1, patches.shape[-1])
        cls = jnp.broadcast_to(self.cls_token[...], (b, 1, tokens.shape[-1]))
        z = jnp.concatenate([cls, tokens], axis=1) + self.pos_embed[...][None]
        z = self.dropout(z, deterministic=not train, rngs=rngs)
        z = self.encoder(z, train=train, rngs=rngs)
        return self.head(z[:, 0])


def resize_positions(pos_embed, old_grid: tuple[int, int], new_grid: tuple[int, int]):
    """pos_embed [1 + gh*gw, d] -> [1 + gh'*gw', d]: the class position is kept, the patch grid
    is resized bilinearly in 2-D (as the paper does to fine-tune at a higher resolution)."""
    cls, grid = pos_embed[:1], pos_embed[1:]
    d = pos_embed.shape[-1]
    if grid.shape[0] != old_grid[0] * old_grid[1]:
        raise JaxdlError(f"pos_embed has {grid.shape[0]} patch positions, not {old_grid} grid")
    grid = jax.image.resize(grid.reshape(*old_grid, d), (*new_grid, d), method="bilinear")
    return jnp.concatenate([cls, grid.reshape(-1, d)], axis=0)


def with_image_size(model: ViT, image_hw: tuple[int, int]) -> ViT:
    """A copy of `model` for images of size image_hw, positions interpolated, other weights shared
    by value."""
    c = model.config
    new_cfg = dataclasses.replace(c, input_shape=(*image_hw, c.input_shape[2]))
    new = nnx.eval_shape(lambda: ViT(new_cfg, rngs=nnx.Rngs(0)))
    _, params, rest = nnx.split(model, nnx.Param, ...)  # fresh States: model is not changed
    params["pos_embed"] = nnx.Param(
        resize_positions(model.pos_embed[...], c.grid(), new_cfg.grid()),
        **L.axes(L.POSITIONS, L.EMBED),
    )
    graphdef = nnx.graphdef(new)
    return nnx.merge(graphdef, params, rest)


_TINY = {
    "input_shape": (16, 16, 3),
    "patch_size": 4,
    "num_classes": 5,
    "d_model": 32,
    "num_heads": 4,
    "num_layers": 2,
    "d_ff": 64,
    "dropout": 0.1,
    "head_zero_init": False,  # a zero head gives the body zero gradients
}


def _row(d, layers, heads, ff):
    return ViTConfig(d_model=d, num_layers=layers, num_heads=heads, d_ff=ff)


for _name, _cfg, _desc in [
    ("vit_ti16", _row(192, 12, 3, 768), "ViT-Ti/16 (DeiT-tiny), 224x224"),
    ("vit_s16", _row(384, 12, 6, 1536), "ViT-S/16 (DeiT-small), 224x224"),
    ("vit_b16", _row(768, 12, 12, 3072), "ViT-B/16, 224x224, 1000 classes"),
    ("vit_l16", _row(1024, 24, 16, 4096), "ViT-L/16, 224x224"),
]:
    register(
        _name, ViT, _cfg, family="vit", description=_desc, task="classify", test_overrides=_TINY
    )

__all__ = ["ViT", "ViTConfig", "resize_positions", "with_image_size"]
