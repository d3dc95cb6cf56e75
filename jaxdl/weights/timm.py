"""Converters from timm state dicts (timm's own names; layouts as in
jaxdl.weights.torchvision, whose helpers these reuse).

- resnet*: timm's ResNet names equal torchvision's (conv1, bn1, layer{s}.{b}.conv{k}/bn{k},
  downsample.0/1, fc), so the torchvision table is used as is.
- vit_*: patch_embed.proj, cls_token, pos_embed, blocks.{i}.{norm1, attn.qkv (packed q, k, v),
  attn.proj, norm2, mlp.fc1, mlp.fc2}, norm, head.
- efficientnet_b*: conv_stem, bn1; blocks.{s}.{b}: the first stage's DepthwiseSeparableConv
  {conv_dw, bn1, se.conv_reduce, se.conv_expand, conv_pw, bn2}, the others' InvertedResidual
  {conv_pw, bn1, conv_dw, bn2, se.*, conv_pwl, bn3}; conv_head, bn2; classifier.
"""

from __future__ import annotations

import numpy as np

from jaxdl.errors import unknown_name
from jaxdl.weights.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from jaxdl.weights.torchvision import _conv_bn, _convert, resnet, vit_tensors


def vit(sd, config):
    """timm vit_*: patch_embed.proj -> patch_embed, cls_token, pos_embed [1, S, d] -> pos_embed
    [S, d], blocks.{i}.{norm1, attn.qkv (split per head into query, key, value), attn.proj,
    norm2, mlp.fc1, mlp.fc2} -> encoder/layers/i/{ln1, attn/query|key|value, attn/out, ln3,
    mlp/fc1, mlp/fc2}, norm -> encoder/ln_f, head -> head."""
    return vit_tensors(
        sd,
        config,
        dict(
            patch="patch_embed.proj",
            cls="cls_token",
            pos="pos_embed",
            layer="blocks.{i}",
            ln1="norm1",
            qkv_w="attn.qkv.weight",
            qkv_b="attn.qkv.bias",
            proj="attn.proj",
            ln2="norm2",
            fc1="mlp.fc1",
            fc2="mlp.fc2",
            norm="norm",
            head="head",
        ),
        "timm vit",
    )


def efficientnet(sd, config):
    """timm efficientnet_b*: conv_stem, bn1 -> stem/conv|bn; blocks.{s}.{b} -> stages/s/b with
    conv_pw, bn1 -> expand (blocks with an expansion), conv_dw, bn1|bn2 -> depthwise,
    se.conv_reduce, se.conv_expand -> se/fc1, se/fc2, conv_pwl, bn3 (or the expansion-free
    first stage's conv_pw, bn2) -> project; conv_head, bn2 -> last; classifier -> head/fc."""
    from jaxdl.models.efficientnet import EfficientNet
    from jaxdl.models.registry import abstract_from_config

    model = abstract_from_config(EfficientNet, config)
    t = {"classifier": ("head/fc", "linear")}
    _conv_bn(t, "conv_stem", "bn1", "stem")
    _conv_bn(t, "conv_head", "bn2", "last")
    for s, stage in enumerate(model.stages):
        for b, block in enumerate(stage):
            p, q = f"blocks.{s}.{b}", f"stages/{s}/{b}"
            if block.expand is not None:
                _conv_bn(t, f"{p}.conv_pw", f"{p}.bn1", f"{q}/expand")
                _conv_bn(t, f"{p}.conv_dw", f"{p}.bn2", f"{q}/depthwise")
                _conv_bn(t, f"{p}.conv_pwl", f"{p}.bn3", f"{q}/project")
            else:
                _conv_bn(t, f"{p}.conv_dw", f"{p}.bn1", f"{q}/depthwise")
                _conv_bn(t, f"{p}.conv_pw", f"{p}.bn2", f"{q}/project")
            if block.se is not None:
                t[f"{p}.se.conv_reduce"] = (f"{q}/se/fc1", "conv")
                t[f"{p}.se.conv_expand"] = (f"{q}/se/fc2", "conv")
    return _convert(sd, t)


TIMM_CONVERTERS = {"resnet": resnet, "vit": vit, "efficientnet": efficientnet}

# jaxdl model name -> (timm model name, the Preprocessing of timm's default pretrained tag:
# mean, std, input size from its pretrained_cfg, kept here so it works offline). timm's
# vit_base_patch16_224 (augreg2_in21k_ft_in1k) normalises with mean = std = 0.5.
_HALF = (0.5, 0.5, 0.5)
TIMM_MODELS = {
    "vit_b16": ("vit_base_patch16_224", Preprocessing(224, mean=_HALF, std=_HALF, source="timm")),
    "resnet50": (
        "resnet50",
        Preprocessing(224, mean=IMAGENET_MEAN, std=IMAGENET_STD, source="timm"),
    ),
    "efficientnet_b0": (
        "efficientnet_b0",
        Preprocessing(224, mean=IMAGENET_MEAN, std=IMAGENET_STD, source="timm"),
    ),
}


def timm_preprocessing(pretrained_cfg: dict, fallback: Preprocessing) -> Preprocessing:
    """Preprocessing from a timm model's pretrained_cfg (mean, std, input_size); entries it
    lacks come from `fallback`."""
    size = pretrained_cfg.get("input_size", (3, fallback.resolution, fallback.resolution))
    return Preprocessing(
        resolution=int(size[-1]),
        mean=tuple(pretrained_cfg.get("mean", fallback.mean)),
        std=tuple(pretrained_cfg.get("std", fallback.std)),
        source="timm",
    )


def convert_timm(family: str, state_dict: dict[str, np.ndarray], config) -> dict[str, np.ndarray]:
    """Our flat tensors from a timm state dict of a model of the jaxdl `family`."""
    if family not in TIMM_CONVERTERS:
        raise unknown_name("timm converter family", family, TIMM_CONVERTERS)
    return TIMM_CONVERTERS[family](state_dict, config)
