"""Converters from torchvision state dicts (read with `torch.load(weights_only=True)` or from
safetensors). torch layouts: conv weight [out, in/groups, kh, kw] -> ours [kh, kw, in/groups, out];
linear weight [out, in] -> [in, out]; BatchNorm weight/bias/running_mean/running_var ->
scale/bias/mean/var; `num_batches_tracked` is bookkeeping and dropped.
"""

from __future__ import annotations

import numpy as np

from jaxdl.errors import unknown_name

_BN = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}


def _conv(w):
    return np.transpose(w, (2, 3, 1, 0))


def _convert(sd: dict[str, np.ndarray], table: dict[str, tuple[str, str]]) -> dict[str, np.ndarray]:
    """table: torch module prefix -> (our path, kind) with kind in conv | bn | linear."""
    out = {}
    for key, arr in sd.items():
        prefix, _, leaf = key.rpartition(".")
        if leaf == "num_batches_tracked":
            continue
        if prefix not in table:
            out[key] = arr  # reported as unexpected by assign(), with its torch name
            continue
        ours, kind = table[prefix]
        if kind == "bn":
            out[f"{ours}/{_BN[leaf]}"] = arr
        elif leaf == "weight":
            out[f"{ours}/kernel"] = _conv(arr) if kind == "conv" else arr.T
        else:
            out[f"{ours}/bias"] = arr
    return out


def resnet(sd, config):
    """torchvision resnet*/resnext*/wide_resnet*: conv1, bn1, layer{s+1}.{b}.conv{k}/bn{k},
    layer{s+1}.{b}.downsample.0/1, fc."""
    t = {"conv1": ("stem/conv", "conv"), "bn1": ("stem/bn", "bn"), "fc": ("head/fc", "linear")}
    for s, n in enumerate(config.layers):
        for b in range(n):
            p, q = f"layer{s + 1}.{b}", f"stages/{s}/{b}"
            for k in (1, 2, 3):
                t[f"{p}.conv{k}"] = (f"{q}/conv{k}/conv", "conv")
                t[f"{p}.bn{k}"] = (f"{q}/conv{k}/bn", "bn")
            t[f"{p}.downsample.0"] = (f"{q}/downsample/conv", "conv")
            t[f"{p}.downsample.1"] = (f"{q}/downsample/bn", "bn")
    return _convert(sd, t)


def vgg(sd, config):
    """torchvision vgg*: features.{i} (conv, [bn,] relu, ..., maxpool per stage) and
    classifier.0/3/6. torch flattens [C, 7, 7] where we flatten [7, 7, C], so fc1's input rows are
    permuted."""
    t, i = {}, 0
    for s, stage in enumerate(config.stages):
        for j in range(len(stage)):
            t[f"features.{i}"] = (f"stages/{s}/{j}/conv", "conv")
            if config.batch_norm:
                t[f"features.{i + 1}"] = (f"stages/{s}/{j}/bn", "bn")
            i += 3 if config.batch_norm else 2
        i += 1  # max pool
    t.update({"classifier.0": ("head/hidden/0", "linear"), "classifier.3": ("head/hidden/1", "linear"),
              "classifier.6": ("head/fc", "linear")})
    out = _convert(sd, t)
    if "head/hidden/0/kernel" in out:
        k = out["head/hidden/0/kernel"]  # [C*7*7, out] in (c, h, w) order
        c = config.stages[-1][-1]
        hw = int(round((k.shape[0] / c) ** 0.5))
        out["head/hidden/0/kernel"] = k.reshape(c, hw, hw, -1).transpose(1, 2, 0, 3).reshape(k.shape[0], -1)
    return out


def densenet(sd, config):
    """torchvision densenet*: features.conv0/norm0, features.denseblock{s+1}.denselayer{i+1}.
    norm1/conv1/norm2/conv2, features.transition{s+1}.norm/conv, features.norm5, classifier."""
    t = {"features.conv0": ("stem/conv", "conv"), "features.norm0": ("stem/bn", "bn"),
         "features.norm5": ("norm", "bn"), "classifier": ("head/fc", "linear")}
    for s, n in enumerate(config.blocks):
        for i in range(n):
            p, q = f"features.denseblock{s + 1}.denselayer{i + 1}", f"blocks/{s}/layers/{i}"
            t.update({f"{p}.norm1": (f"{q}/conv1/bn", "bn"), f"{p}.conv1": (f"{q}/conv1/conv", "conv"),
                      f"{p}.norm2": (f"{q}/conv2/bn", "bn"), f"{p}.conv2": (f"{q}/conv2/conv", "conv")})
        if s < len(config.blocks) - 1:
            p = f"features.transition{s + 1}"
            t.update({f"{p}.norm": (f"transitions/{s}/unit/bn", "bn"), f"{p}.conv": (f"transitions/{s}/unit/conv", "conv")})
    return _convert(sd, t)


TORCHVISION_CONVERTERS = {"resnet": resnet, "vgg": vgg, "densenet": densenet}


def convert_torchvision(family: str, state_dict: dict[str, np.ndarray], config) -> dict[str, np.ndarray]:
    if family not in TORCHVISION_CONVERTERS:
        raise unknown_name("torchvision converter family", family, TORCHVISION_CONVERTERS)
    return TORCHVISION_CONVERTERS[family](state_dict, config)
