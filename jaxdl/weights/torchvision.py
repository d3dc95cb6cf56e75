"""Converters from torchvision state dicts (read with `torch.load(weights_only=True)` or from
safetensors). torch layouts: conv weight [out, in/groups, kh, kw] -> ours [kh, kw, in/groups, out]
(a depthwise [C, 1, kh, kw] becomes [kh, kw, 1, C], nnx.Conv's grouped layout); linear weight
[out, in] -> [in, out]; BatchNorm / LayerNorm weight, bias, running_mean, running_var -> scale,
bias, mean, var; `num_batches_tracked` is bookkeeping and dropped.

Each family's converter builds a table {torch module prefix: (our path, kind)} from the model's
config and renames through it; state-dict entries outside the table are kept under their torch
name, so `jaxdl.weights.convert.assign` lists them as unexpected instead of dropping them.
The timm converters (jaxdl.weights.timm) reuse these helpers.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from jaxdl.errors import JaxdlError, unknown_name
from jaxdl.nn.resample import adaptive_pool_matrix
from jaxdl.weights.preprocess import TORCHVISION, Preprocessing

_BN = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}


def _conv(w):
    return np.transpose(w, (2, 3, 1, 0))


def _convert(
    sd: dict[str, np.ndarray], table: dict[str, tuple[str, str]], *, drop: tuple[str, ...] = ()
) -> dict[str, np.ndarray]:
    """table: torch module prefix -> (our path, kind) with kind in conv | bn | linear | norm
    (LayerNorm). Keys starting with a prefix in `drop` are discarded (parts of the source
    model that the jaxdl model was configured without, e.g. auxiliary heads)."""
    out = {}
    for key, arr in sd.items():
        if key.startswith(drop) and drop:
            continue
        prefix, _, leaf = key.rpartition(".")
        if leaf == "num_batches_tracked":
            continue
        if prefix not in table:
            out[key] = arr  # reported as unexpected by assign(), with its torch name
            continue
        ours, kind = table[prefix]
        if kind in ("bn", "norm"):
            out[f"{ours}/{_BN[leaf]}"] = arr
        elif leaf == "weight":
            out[f"{ours}/kernel"] = _conv(arr) if kind == "conv" else arr.T
        else:
            out[f"{ours}/bias"] = arr
    return out


def _conv_bn(t: dict, torch_conv: str, torch_bn: str, ours: str) -> None:
    """A torch conv + BatchNorm pair -> our ConvBN at `ours` (`conv`, `bn`)."""
    t[torch_conv] = (f"{ours}/conv", "conv")
    t[torch_bn] = (f"{ours}/bn", "bn")


def _flatten_rows(k: np.ndarray, c: int, h: int, w: int) -> np.ndarray:
    """A Linear kernel [c*h*w, out] whose rows follow torch's NCHW flatten (c, h, w) -> rows in
    our NHWC flatten order (h, w, c)."""
    return k.reshape(c, h, w, -1).transpose(1, 2, 0, 3).reshape(c * h * w, -1)


def resnet(sd, config):
    """torchvision resnet* / resnext* (timm's resnet* use the same names): conv1, bn1,
    layer{s+1}.{b}.conv{k}/bn{k} -> stages/s/b/conv{k}/conv|bn, layer{s+1}.{b}.downsample.0/1 ->
    stages/s/b/downsample/conv|bn, fc -> head/fc."""
    t = {"fc": ("head/fc", "linear")}
    _conv_bn(t, "conv1", "bn1", "stem")
    for s, n in enumerate(config.layers):
        for b in range(n):
            p, q = f"layer{s + 1}.{b}", f"stages/{s}/{b}"
            for k in (1, 2, 3):
                _conv_bn(t, f"{p}.conv{k}", f"{p}.bn{k}", f"{q}/conv{k}")
            _conv_bn(t, f"{p}.downsample.0", f"{p}.downsample.1", f"{q}/downsample")
    return _convert(sd, t)


def fcn(sd, config):
    """torchvision fcn_resnet50 / fcn_resnet101: backbone.* as `resnet` under `backbone/`
    (backbone.fc does not exist: the backbone has no top); classifier.0 / .1 / .4 (FCNHead's
    3x3 conv, BN, 1x1 conv) -> classifier/conv/conv, classifier/conv/bn, classifier/classifier;
    aux_classifier.* the same under aux_classifier/ (dropped when the model has no aux head)."""
    from jaxdl.models.fcn import FCNResNetConfig

    if not isinstance(config, FCNResNetConfig):
        raise JaxdlError(
            "torchvision has no FCN on VGG (fcn32s/16s/8s); its FCNs are fcn_resnet50/101"
        )
    t = {}
    _conv_bn(t, "backbone.conv1", "backbone.bn1", "backbone/stem")
    for s, n in enumerate(config.layers):
        for b in range(n):
            p, q = f"backbone.layer{s + 1}.{b}", f"backbone/stages/{s}/{b}"
            for k in (1, 2, 3):
                _conv_bn(t, f"{p}.conv{k}", f"{p}.bn{k}", f"{q}/conv{k}")
            _conv_bn(t, f"{p}.downsample.0", f"{p}.downsample.1", f"{q}/downsample")
    for head in ("classifier", "aux_classifier"):
        _conv_bn(t, f"{head}.0", f"{head}.1", f"{head}/conv")
        t[f"{head}.4"] = (f"{head}/classifier", "conv")
    return _convert(sd, t, drop=() if config.aux else ("aux_classifier.",))


def vgg(sd, config):
    """torchvision vgg*: features.{i} (conv, [bn,] relu, ..., maxpool per stage) ->
    stages/s/j/conv|bn; classifier.0/3/6 -> head/hidden/0, head/hidden/1, head/fc.

    torchvision pools the last feature map adaptively to 7x7 and flattens [C, 7, 7]; we flatten
    our [h, w, C] map directly (h, w = input / 32). Both are linear, so fc1's kernel is
    re-expressed exactly: rows permuted to our (h, w, c) order and, when h, w != 7 (inputs other
    than 224), the adaptive pooling folded into it."""
    t, i = {}, 0
    for s, stage in enumerate(config.stages):
        for j in range(len(stage)):
            t[f"features.{i}"] = (f"stages/{s}/{j}/conv", "conv")
            if config.batch_norm:
                t[f"features.{i + 1}"] = (f"stages/{s}/{j}/bn", "bn")
            i += 3 if config.batch_norm else 2
        i += 1  # max pool
    t.update(
        {
            "classifier.0": ("head/hidden/0", "linear"),
            "classifier.3": ("head/hidden/1", "linear"),
            "classifier.6": ("head/fc", "linear"),
        }
    )
    out = _convert(sd, t)
    k = out.get("head/hidden/0/kernel")
    if k is not None and config.include_top:
        c = config.stages[-1][-1]
        if k.shape[0] != c * 49:
            raise JaxdlError(
                f"torchvision vgg classifier.0 has {k.shape[0]} inputs, expected "
                f"{c} x 7 x 7 = {c * 49}"
            )
        h, w = (n >> len(config.stages) for n in config.input_shape[:2])
        k = k.reshape(c, 7, 7, -1)
        if (h, w) != (7, 7):
            ph, pw = adaptive_pool_matrix(h, 7), adaptive_pool_matrix(w, 7)
            k = np.einsum("cabo,ai,bj->cijo", k.astype(np.float64), ph, pw).astype(k.dtype)
        out["head/hidden/0/kernel"] = _flatten_rows(k.reshape(c * h * w, -1), c, h, w)
    return out


def densenet(sd, config):
    """torchvision densenet*: features.conv0/norm0 -> stem/conv|bn,
    features.denseblock{s+1}.denselayer{i+1}.norm1/conv1/norm2/conv2 ->
    blocks/s/layers/i/conv1|conv2/bn|conv, features.transition{s+1}.norm/conv ->
    transitions/s/unit/bn|conv, features.norm5 -> norm, classifier -> head/fc."""
    t = {"features.norm5": ("norm", "bn"), "classifier": ("head/fc", "linear")}
    _conv_bn(t, "features.conv0", "features.norm0", "stem")
    for s, n in enumerate(config.blocks):
        for i in range(n):
            p, q = f"features.denseblock{s + 1}.denselayer{i + 1}", f"blocks/{s}/layers/{i}"
            _conv_bn(t, f"{p}.conv1", f"{p}.norm1", f"{q}/conv1")
            _conv_bn(t, f"{p}.conv2", f"{p}.norm2", f"{q}/conv2")
        if s < len(config.blocks) - 1:
            p = f"features.transition{s + 1}"
            _conv_bn(t, f"{p}.conv", f"{p}.norm", f"transitions/{s}/unit")
    return _convert(sd, t)


def _basic(t, torch: str, ours: str) -> None:
    """torchvision's BasicConv2d (`.conv`, `.bn`) -> our ConvBN."""
    _conv_bn(t, f"{torch}.conv", f"{torch}.bn", ours)


def _branches(t, torch: str, ours: str, branches) -> None:
    """branches: per branch, the torch names of its layers in order (None for a pooling layer,
    which has no parameters but takes an index in ours): -> ours/branches/i/j."""
    for i, names in enumerate(branches):
        for j, name in enumerate(names):
            if name is not None:
                _basic(t, f"{torch}.{name}", f"{ours}/branches/{i}/{j}")


def _googlenet(sd, config):
    """torchvision googlenet: conv1, conv2, conv3 -> stem/0, stem/2, stem/3;
    inception{3a..5b}.branch1 | branch2.{0,1} | branch3.{0,1} | branch4.1 ->
    blocks/<name>/branches/0/0 | 1/0, 1/1 | 2/0, 2/1 | 3/1 (branch4.0 is the max pool);
    aux1 | aux2 .conv, .fc1, .fc2 -> aux/4a | aux/4d /convs/0, head/hidden/0, head/fc; fc ->
    head/fc. Every conv is a BasicConv2d (`.conv`, `.bn`, eps 1e-3).

    torchvision's pretrained file carries aux1/aux2 (its model drops them after loading); they
    are discarded when the jaxdl model is built without `aux_logits`. With `aux_logits`, fc1's
    rows are permuted from torch's (c, h, w) flatten to ours. torchvision pools the aux input
    adaptively to 4x4: build the model with `aux_pool='adaptive'` for auxiliary outputs equal
    to torchvision's; the paper's 5x5/3 pool (the default) has other windows, even at 224."""
    t = {"fc": ("head/fc", "linear")}
    for torch, ours in (("conv1", 0), ("conv2", 2), ("conv3", 3)):
        _basic(t, torch, f"stem/{ours}")
    for name in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b"):
        _branches(
            t,
            f"inception{name}",
            f"blocks/{name}",
            [
                ["branch1"],
                ["branch2.0", "branch2.1"],
                ["branch3.0", "branch3.1"],
                [None, "branch4.1"],
            ],
        )
    drop = ()
    if config.aux_logits:
        for torch, ours in (("aux1", "4a"), ("aux2", "4d")):
            _basic(t, f"{torch}.conv", f"aux/{ours}/convs/0")
            t[f"{torch}.fc1"] = (f"aux/{ours}/head/hidden/0", "linear")
            t[f"{torch}.fc2"] = (f"aux/{ours}/head/fc", "linear")
    else:
        drop = ("aux1.", "aux2.")
    out = _convert(sd, t, drop=drop)
    for ours in ("4a", "4d"):
        k = out.get(f"aux/{ours}/head/hidden/0/kernel")
        if k is not None:
            c = 128 if config.width_mult == 1.0 else max(1, round(128 * config.width_mult))
            side = int(round((k.shape[0] / c) ** 0.5))
            out[f"aux/{ours}/head/hidden/0/kernel"] = _flatten_rows(k, c, side, side)
    return out


def _inception_v3(sd, config):
    """torchvision inception_v3: Conv2d_1a_3x3, 2a, 2b, 3b_1x1, 4a_3x3 -> stem/0, 1, 2, 4, 5;
    Mixed_5b..5d (A): branch1x1 | branch5x5_1, _2 | branch3x3dbl_1.._3 | branch_pool ->
    branches/0/0 | 1/0, 1/1 | 2/0..2 | 3/1; Mixed_6a (B): branch3x3 | branch3x3dbl_1.._3 ->
    0/0 | 1/0..2; Mixed_6b..6e (C): branch1x1 | branch7x7_1.._3 | branch7x7dbl_1.._5 |
    branch_pool -> 0/0 | 1/0..2 | 2/0..4 | 3/1; Mixed_7a (D): branch3x3_1, _2 |
    branch7x7x3_1.._4 -> 0/0, 0/1 | 1/0..3; Mixed_7b, 7c (E): branch1x1, branch3x3_1,
    branch3x3_2a, _2b, branch3x3dbl_1, _2, _3a, _3b, branch_pool -> b1, b3, b3_a, b3_b,
    dbl/branches/0/0, 0/1, dbl_a, dbl_b, pool/branches/0/1; AuxLogits.conv0, conv1, fc ->
    aux/6e/convs/0, 1, head/fc (dropped without `aux_logits`); fc -> head/fc."""
    t = {"fc": ("head/fc", "linear")}
    for torch, ours in (
        ("Conv2d_1a_3x3", 0),
        ("Conv2d_2a_3x3", 1),
        ("Conv2d_2b_3x3", 2),
        ("Conv2d_3b_1x1", 4),
        ("Conv2d_4a_3x3", 5),
    ):
        _basic(t, torch, f"stem/{ours}")
    dbl3 = [f"branch3x3dbl_{i}" for i in (1, 2, 3)]
    for name in ("5b", "5c", "5d"):
        _branches(
            t,
            f"Mixed_{name}",
            f"blocks/{name}",
            [["branch1x1"], ["branch5x5_1", "branch5x5_2"], dbl3, [None, "branch_pool"]],
        )
    _branches(t, "Mixed_6a", "blocks/6a", [["branch3x3"], dbl3])
    for name in ("6b", "6c", "6d", "6e"):
        _branches(
            t,
            f"Mixed_{name}",
            f"blocks/{name}",
            [
                ["branch1x1"],
                [f"branch7x7_{i}" for i in (1, 2, 3)],
                [f"branch7x7dbl_{i}" for i in range(1, 6)],
                [None, "branch_pool"],
            ],
        )
    _branches(
        t,
        "Mixed_7a",
        "blocks/7a",
        [["branch3x3_1", "branch3x3_2"], [f"branch7x7x3_{i}" for i in range(1, 5)]],
    )
    for name in ("7b", "7c"):
        p, q = f"Mixed_{name}", f"blocks/{name}"
        for torch, ours in (
            ("branch1x1", "b1"),
            ("branch3x3_1", "b3"),
            ("branch3x3_2a", "b3_a"),
            ("branch3x3_2b", "b3_b"),
            ("branch3x3dbl_1", "dbl/branches/0/0"),
            ("branch3x3dbl_2", "dbl/branches/0/1"),
            ("branch3x3dbl_3a", "dbl_a"),
            ("branch3x3dbl_3b", "dbl_b"),
            ("branch_pool", "pool/branches/0/1"),
        ):
            _basic(t, f"{p}.{torch}", f"{q}/{ours}")
    drop = ()
    if config.aux_logits:
        _basic(t, "AuxLogits.conv0", "aux/6e/convs/0")
        _basic(t, "AuxLogits.conv1", "aux/6e/convs/1")
        t["AuxLogits.fc"] = ("aux/6e/head/fc", "linear")
    else:
        drop = ("AuxLogits.",)
    return _convert(sd, t, drop=drop)


def inception(sd, config):
    """torchvision googlenet (config.version 'v1') or inception_v3 ('v3'); see `_googlenet`
    and `_inception_v3` for the name mappings."""
    if config.version == "v1":
        return _googlenet(sd, config)
    if config.version == "v3":
        return _inception_v3(sd, config)
    raise JaxdlError(
        f"torchvision has no Inception {config.version!r} (timm has "
        f"inception_resnet_v2; its converter is not written)"
    )


def _inverted_residual(t, torch: str, ours: str, block) -> None:
    """torchvision's InvertedResidual / MBConv body, a Sequential of [expand] depthwise [SE]
    project: Conv2dNormActivation entries (`.0` conv, `.1` BN) and the SE (`fc1`, `fc2`) in
    that order -> ours/expand, depthwise, se/fc1|fc2, project. `block` is our (abstract)
    InvertedResidual, which says whether the expand conv and the SE exist."""
    j = 0
    if block.expand is not None:
        _conv_bn(t, f"{torch}.{j}.0", f"{torch}.{j}.1", f"{ours}/expand")
        j += 1
    _conv_bn(t, f"{torch}.{j}.0", f"{torch}.{j}.1", f"{ours}/depthwise")
    j += 1
    if block.se is not None:
        t[f"{torch}.{j}.fc1"] = (f"{ours}/se/fc1", "conv")
        t[f"{torch}.{j}.fc2"] = (f"{ours}/se/fc2", "conv")
        j += 1
    _conv_bn(t, f"{torch}.{j}.0", f"{torch}.{j}.1", f"{ours}/project")


def mobilenet(sd, config):
    """torchvision mobilenet_v2 / mobilenet_v3_small|large: features.0.0/0.1 -> stem/conv|bn;
    features.{i+1} -> blocks/i; features.{n+1}.0/.1 -> last/conv|bn; v2 classifier.1 ->
    head/fc; v3 classifier.0, classifier.3 -> head/hidden/0, head/fc.

    v3 blocks: features.{i+1}.block.{j} as in `_inverted_residual`. v2 blocks differ: their
    Sequential `conv` holds Conv2dNormActivation entries for expand and depthwise, then the
    project conv and its BN as two plain entries: conv.{0 [, 1]}.0/.1, conv.{k}, conv.{k+1}."""
    from jaxdl.models.mobilenet import MobileNet
    from jaxdl.models.registry import abstract_from_config

    if config.version == 1:
        raise JaxdlError("torchvision has no MobileNet v1 (use source='keras')")
    model = abstract_from_config(MobileNet, config)
    t = {}
    _conv_bn(t, "features.0.0", "features.0.1", "stem")
    for i, block in enumerate(model.blocks):
        p, q = f"features.{i + 1}", f"blocks/{i}"
        if config.version == 3:
            _inverted_residual(t, f"{p}.block", q, block)
            continue
        j = 0
        if block.expand is not None:
            _conv_bn(t, f"{p}.conv.0.0", f"{p}.conv.0.1", f"{q}/expand")
            j = 1
        _conv_bn(t, f"{p}.conv.{j}.0", f"{p}.conv.{j}.1", f"{q}/depthwise")
        _conv_bn(t, f"{p}.conv.{j + 1}", f"{p}.conv.{j + 2}", f"{q}/project")
    n = len(model.blocks) + 1
    _conv_bn(t, f"features.{n}.0", f"features.{n}.1", "last")
    if config.version == 3:
        t.update(
            {"classifier.0": ("head/hidden/0", "linear"), "classifier.3": ("head/fc", "linear")}
        )
    else:
        t["classifier.1"] = ("head/fc", "linear")
    return _convert(sd, t)


def efficientnet(sd, config):
    """torchvision efficientnet_b0..b7: features.0.0/0.1 -> stem/conv|bn;
    features.{s+1}.{b}.block.{j} -> stages/s/b/... as in `_inverted_residual`;
    features.8.0/8.1 -> last/conv|bn; classifier.1 -> head/fc."""
    from jaxdl.models.efficientnet import EfficientNet
    from jaxdl.models.registry import abstract_from_config

    model = abstract_from_config(EfficientNet, config)
    t = {"classifier.1": ("head/fc", "linear")}
    _conv_bn(t, "features.0.0", "features.0.1", "stem")
    for s, stage in enumerate(model.stages):
        for b, block in enumerate(stage):
            _inverted_residual(t, f"features.{s + 1}.{b}.block", f"stages/{s}/{b}", block)
    n = len(model.stages) + 1
    _conv_bn(t, f"features.{n}.0", f"features.{n}.1", "last")
    return _convert(sd, t)


def split_qkv(w: np.ndarray, b: np.ndarray | None, num_heads: int, prefix: str) -> dict:
    """A packed torch projection (weight [3d, d], bias [3d]: q, k, v stacked on the output
    axis) -> our MultiHeadAttention's `query|key|value/kernel` [d, heads, d / heads] and
    `.../bias` [heads, d / heads]."""
    d = w.shape[1]
    if w.shape[0] != 3 * d:
        raise JaxdlError(
            f"{prefix}: packed q/k/v weight has shape {w.shape}, expected ({3 * d}, {d})"
        )
    out = {}
    for i, name in enumerate(("query", "key", "value")):
        out[f"{prefix}/{name}/kernel"] = w[i * d : (i + 1) * d].T.reshape(d, num_heads, -1)
        if b is not None:
            out[f"{prefix}/{name}/bias"] = b[i * d : (i + 1) * d].reshape(num_heads, -1)
    return out


def out_proj(w: np.ndarray, num_heads: int) -> np.ndarray:
    """torch's attention output Linear [d, heads * dh] -> our `out/kernel` [heads, dh, d]."""
    return w.T.reshape(num_heads, -1, w.shape[0])


def vit_tensors(
    sd: dict[str, np.ndarray], config, names: dict, source: str
) -> dict[str, np.ndarray]:
    """Our ViT's tensors from a torch ViT state dict. `names` gives the torch spellings: patch,
    cls, pos, layer (format string with {i}), ln1, qkv_w, qkv_b, proj, ln2, fc1, fc2, norm,
    head. Torch names that are absent raise one error listing them; entries not used stay under
    their torch names (unexpected for `assign`). Layers are stacked on a leading axis when the
    model scans them (`scan_layers`)."""
    n = names
    layer_names = [n["qkv_w"], n["qkv_b"], f"{n['proj']}.weight", f"{n['proj']}.bias"] + [
        f"{m}.{leaf}"
        for m in (n["ln1"], n["ln2"], n["fc1"], n["fc2"])
        for leaf in ("weight", "bias")
    ]
    needed = [
        f"{m}.{leaf}" for m in (n["patch"], n["norm"], n["head"]) for leaf in ("weight", "bias")
    ]
    needed += [n["cls"], n["pos"]] + [
        f"{n['layer'].format(i=i)}.{x}" for i in range(config.num_layers) for x in layer_names
    ]
    missing = [k for k in needed if k not in sd]
    if missing:
        raise JaxdlError(
            f"{source} state dict lacks {len(missing)} tensor(s): "
            f"{', '.join(missing[:20])}{' ...' if len(missing) > 20 else ''}"
        )
    out = {k: v for k, v in sd.items() if k not in set(needed)}
    h = config.num_heads
    out.update(
        {
            "patch_embed/kernel": _conv(sd[f"{n['patch']}.weight"]),
            "patch_embed/bias": sd[f"{n['patch']}.bias"],
            "cls_token": sd[n["cls"]].reshape(1, 1, -1),
            "pos_embed": sd[n["pos"]].reshape(-1, sd[n["pos"]].shape[-1]),
            "encoder/ln_f/scale": sd[f"{n['norm']}.weight"],
            "encoder/ln_f/bias": sd[f"{n['norm']}.bias"],
            "head/kernel": sd[f"{n['head']}.weight"].T,
            "head/bias": sd[f"{n['head']}.bias"],
        }
    )
    layers = []
    for i in range(config.num_layers):
        p = n["layer"].format(i=i) + "."
        lay = split_qkv(sd[p + n["qkv_w"]], sd[p + n["qkv_b"]], h, "attn")
        lay["attn/out/kernel"] = out_proj(sd[p + n["proj"] + ".weight"], h)
        lay["attn/out/bias"] = sd[p + n["proj"] + ".bias"]
        for torch, ours in ((n["ln1"], "ln1"), (n["ln2"], "ln3")):
            lay[f"{ours}/scale"], lay[f"{ours}/bias"] = (
                sd[p + torch + ".weight"],
                sd[p + torch + ".bias"],
            )
        for torch, ours in ((n["fc1"], "mlp/fc1"), (n["fc2"], "mlp/fc2")):
            lay[f"{ours}/kernel"], lay[f"{ours}/bias"] = (
                sd[p + torch + ".weight"].T,
                sd[p + torch + ".bias"],
            )
        layers.append(lay)
    if config.scan_layers:
        out.update({f"encoder/layers/{k}": np.stack([lay[k] for lay in layers]) for k in layers[0]})
    else:
        out.update(
            {f"encoder/layers/{i}/{k}": v for i, lay in enumerate(layers) for k, v in lay.items()}
        )
    return out


def vit(sd, config):
    """torchvision vit_b_16 and friends: conv_proj -> patch_embed, class_token -> cls_token,
    encoder.pos_embedding [1, S, d] -> pos_embed [S, d], encoder.layers.encoder_layer_{i}.
    {ln_1, self_attention.in_proj_weight|in_proj_bias (packed q, k, v; split per head),
    self_attention.out_proj, ln_2, mlp.0, mlp.3} -> encoder/layers/i/{ln1, attn/query|key|value,
    attn/out, ln3, mlp/fc1, mlp/fc2}, encoder.ln -> encoder/ln_f, heads.head -> head."""
    return vit_tensors(
        sd,
        config,
        dict(
            patch="conv_proj",
            cls="class_token",
            pos="encoder.pos_embedding",
            layer="encoder.layers.encoder_layer_{i}",
            ln1="ln_1",
            qkv_w="self_attention.in_proj_weight",
            qkv_b="self_attention.in_proj_bias",
            proj="self_attention.out_proj",
            ln2="ln_2",
            fc1="mlp.0",
            fc2="mlp.3",
            norm="encoder.ln",
            head="heads.head",
        ),
        "torchvision vit",
    )


TORCHVISION_CONVERTERS = {
    "resnet": resnet,
    "vgg": vgg,
    "densenet": densenet,
    "fcn": fcn,
    "inception": inception,
    "mobilenet": mobilenet,
    "efficientnet": efficientnet,
    "vit": vit,
}

# jaxdl model name -> torchvision model name, where they differ.
TORCHVISION_NAMES = {"vit_b16": "vit_b_16", "vit_l16": "vit_l_16"}

# The evaluation crop of torchvision's default weights (their `transforms`), where it is not 224.
_RESOLUTION = {
    "fcn_resnet50": 520,  # SemanticSegmentation(resize_size=520)
    "fcn_resnet101": 520,
    "inception_v3": 299,
    "efficientnet_b1": 240,
    "efficientnet_b2": 288,
    "efficientnet_b3": 300,
    "efficientnet_b4": 380,
    "efficientnet_b5": 456,
    "efficientnet_b6": 528,
    "efficientnet_b7": 600,
}
# torchvision builds these with `transform_input=True` when it loads their weights: the model
# turns ImageNet-normalised input into (x - 0.5) / 0.5 before its first conv. Ours has no such
# step; the preprocessing does it, so the same weights see the same input.
_TRANSFORM_INPUT = ("googlenet", "inception_v3")


def torchvision_preprocessing(name: str) -> Preprocessing:
    """The input pipeline torchvision's default weights for jaxdl model `name` expect: RGB in
    [0, 1], ImageNet mean/std (mean = std = 0.5 for transform_input models), at the weights'
    evaluation crop."""
    prep = replace(TORCHVISION, resolution=_RESOLUTION.get(name, 224))
    if name in _TRANSFORM_INPUT:
        prep = replace(
            prep, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), source="torchvision (transform_input)"
        )
    return prep


def convert_torchvision(
    family: str, state_dict: dict[str, np.ndarray], config
) -> dict[str, np.ndarray]:
    """Our flat tensors (see jaxdl.weights.convert) from a torchvision state dict of a model of
    the jaxdl `family`, for the jaxdl model built from `config`."""
    if family not in TORCHVISION_CONVERTERS:
        raise unknown_name("torchvision converter family", family, TORCHVISION_CONVERTERS)
    return TORCHVISION_CONVERTERS[family](state_dict, config)
