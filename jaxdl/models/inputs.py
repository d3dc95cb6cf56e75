"""Example inputs from a model's config: `input_shape` (without batch) and optional
`input_dtype` ('float32' for images and features, 'int32' for token ids)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxdl.errors import JaxdlError


def example_input(config, batch_size: int = 1) -> jax.ShapeDtypeStruct:
    shape = getattr(config, "input_shape", None)
    if shape is None:
        raise JaxdlError(f"{type(config).__name__} has no input_shape; pass an input explicitly")
    dtype = jnp.dtype(getattr(config, "input_dtype", "float32"))
    return jax.ShapeDtypeStruct((batch_size, *shape), dtype)


def resize_input_shape(config, size: int) -> tuple[int, ...]:
    """input_shape with its spatial size set to `size`: (H, W, C) -> (size, size, C);
    (T,) or (T, F) -> (size,) / (size, F)."""
    shape = tuple(getattr(config, "input_shape", ()))
    if len(shape) == 3:
        return (size, size, shape[2])
    if len(shape) in (1, 2) and getattr(config, "input_dtype", "float32") != "float32":
        return (size, *shape[1:])
    if len(shape) == 2:
        return (size, shape[1])
    raise JaxdlError(f"--input does not apply to input_shape {shape}")


def task_output_spec(task: str, config, batch_size: int = 1):
    """What a model of task kind `task` (jaxdl.models.registry.TASKS) returns for
    `example_input(config, batch_size)` in inference (docs/design.md, the model contract):

    - classify: logits [B, num_classes] (the perceptron: {0, 1} outputs [B, num_outputs]);
    - tag, lm: per-token logits [B, T, classes] (classes: num_classes, else vocab_size);
    - seq2seq: decoder logits [B, T - source length, target vocabulary] for the
      source-then-target input of length T;
    - reconstruct: logits of the input's shape; vae: {'logits', 'mean', 'logvar'};
    - gan: the discriminator's logit of "real" [B, 1] (`generate(key, n)` draws images);
    - segment: per-pixel logits [B, H', W', num_classes].
    """
    from jaxdl.models.registry import TASKS

    x = example_input(config, batch_size)
    f32 = jnp.float32
    spec = lambda *shape: jax.ShapeDtypeStruct((batch_size, *shape), f32)
    if task == "perceptron":
        return spec(config.num_outputs)
    if task == "classify":
        return spec(config.num_classes)
    if task in ("tag", "lm"):
        classes = getattr(config, "num_classes", None) or config.vocab_size
        return spec(x.shape[1], classes)
    if task == "seq2seq":
        src = config.src_len if hasattr(config, "src_len") else config.source_len
        vocab = getattr(config, "tgt_vocab", None) or getattr(config, "target_vocab_size", None)
        return spec(x.shape[1] - src, vocab or config.vocab_size)
    if task == "reconstruct":
        return spec(*x.shape[1:])
    if task == "vae":
        latent = spec(config.latent_dim)
        return {"logits": spec(*x.shape[1:]), "mean": latent, "logvar": latent}
    if task == "gan":
        return spec(1)
    if task == "segment":
        h, w = x.shape[1:3]
        if getattr(config, "padding", "same") == "valid":
            from jaxdl.models.unet import unet_output_size

            h, w = (unet_output_size(n, config.depth, "valid") for n in (h, w))
        return spec(h, w, config.num_classes)
    raise JaxdlError(f"task must be one of {', '.join(TASKS)}; got {task!r}")
