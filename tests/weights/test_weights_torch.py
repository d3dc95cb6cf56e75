"""Output parity of the torchvision and timm converters against the real torch models.

Each test builds the torch model with random weights (every constant-initialised tensor, BN
statistics included, randomised so no mapping hides behind zeros or ones), converts its state
dict, and compares logits in float32 in eval mode on NHWC (ours) vs NCHW (torch) inputs.
Skipped where torch, torchvision or timm are absent (tests/_torch.py); the name tables are also
checked without torch in tests/weights/test_weights_load.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from _torch import import_timm, import_torch, import_torchvision
from flax import nnx

from jaxdl import create_model
from jaxdl.models.registry import get_entry
from jaxdl.weights.convert import assign
from jaxdl.weights.torchvision import convert_torchvision

TOL = 1e-4


def randomized_state_dict(module, seed: int = 0) -> dict[str, np.ndarray]:
    """module's state dict as numpy, with constant tensors (zero biases, unit BN/LN scales,
    zero running means, unit running variances, zero-initialised heads) replaced by random
    values around their constant; loaded back into `module` so both sides hold the same."""
    torch = import_torch()
    g = torch.Generator().manual_seed(seed)
    sd = module.state_dict()
    with torch.no_grad():
        for k, v in sd.items():
            if not v.is_floating_point() or v.numel() == 0:
                continue
            if k.endswith("running_var"):
                v.copy_(0.5 + torch.rand(v.shape, generator=g))
            elif v.numel() == 1 or float(v.std()) == 0.0:
                v.add_(0.1 * torch.randn(v.shape, generator=g))
    module.load_state_dict(sd)
    return {k: v.detach().numpy().copy() for k, v in sd.items()}


def rel_err(ours, ref) -> float:
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


def calibrate_batch_norm(module, x) -> None:
    """Running statistics of every BatchNorm set to those of the batch x (NCHW): one forward in
    training mode with a cumulative average (momentum None) and dropout / stochastic depth off.
    MobileNet, EfficientNet and GoogLeNet saturate (ReLU6, hard-swish, SE gates) with made-up
    statistics and then ignore their input, which would make parity nearly vacuous."""
    torch = import_torch()
    bns = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    module.train()
    for m in module.modules():
        if isinstance(m, torch.nn.Dropout) or type(m).__name__ in ("StochasticDepth", "DropPath"):
            m.eval()
    with torch.no_grad():
        module(x)
    module.eval()


def check_parity(torch_model, ours_name, family_converter, *, size, overrides=None, seed=0):
    """Convert torch_model's randomised weights into a fresh jaxdl model and compare logits on
    a batch of 2 images of size x size (the first 2 of the 8 the BN statistics are calibrated
    on, for the families that need it). Returns the max relative error."""
    torch = import_torch()
    torch_model.eval()
    sd = randomized_state_dict(torch_model, seed)
    xs = np.random.default_rng(seed).normal(size=(8, size, size, 3)).astype(np.float32)
    if ours_name.startswith(("googlenet", "mobilenet", "efficientnet")):
        calibrate_batch_norm(torch_model, torch.from_numpy(xs.transpose(0, 3, 1, 2).copy()))
        sd = {k: v.detach().numpy().copy() for k, v in torch_model.state_dict().items()}
    ours = create_model(
        ours_name, rngs=nnx.Rngs(0), input_shape=(size, size, 3), **(overrides or {})
    )
    assign(ours, family_converter(sd, ours.config), source=f"{ours_name} state dict")
    x = xs[:2]
    with torch.no_grad():
        ref = torch_model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    # the logits must depend on the input, or parity would say little
    assert rel_err(ref[0], ref[1]) > 1e-2, f"{ours_name}: the torch model ignores its input"
    err = rel_err(ours(x), ref)
    print(f"{ours_name}: max relative error {err:.2e}")
    assert err < TOL, (ours_name, err)
    return err


def tv_convert(name):
    family = get_entry(name).family
    return lambda sd, config: convert_torchvision(family, sd, config)


# (our name, torchvision constructor kwargs, input side)
TORCHVISION_CASES = [
    ("resnet18", {}, 64),
    ("resnet50", {}, 64),
    ("vgg11_bn", {}, 64),
    ("googlenet", {"aux_logits": False, "init_weights": True}, 64),
    ("mobilenet_v2", {}, 64),
    ("mobilenet_v3_small", {}, 64),
    ("mobilenet_v3_large", {}, 64),
    ("efficientnet_b0", {}, 64),
]
SLOW_TORCHVISION_CASES = [
    ("resnext50_32x4d", {}, 64),
    ("densenet121", {}, 64),
    ("inception_v3", {"aux_logits": False, "init_weights": True}, 96),
    ("vgg16", {}, 224),
    ("efficientnet_b5", {}, 64),  # BN eps 1e-3 from B5 on
]


def _torchvision_case(name, kwargs, size):
    tv = import_torchvision()
    torch_model = tv.models.get_model(name, weights=None, **kwargs)
    return check_parity(torch_model, name, tv_convert(name), size=size)


@pytest.mark.parametrize(
    "name,kwargs,size", TORCHVISION_CASES, ids=[c[0] for c in TORCHVISION_CASES]
)
def test_torchvision_parity(name, kwargs, size):
    _torchvision_case(name, kwargs, size)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name,kwargs,size", SLOW_TORCHVISION_CASES, ids=[c[0] for c in SLOW_TORCHVISION_CASES]
)
def test_torchvision_parity_big(name, kwargs, size):
    _torchvision_case(name, kwargs, size)


# a 2-layer, 64-wide ViT on 32x32 images with 16x16 patches, as our vit_b16 overrides
SMALL_VIT = dict(d_model=64, num_layers=2, num_heads=4, d_ff=128, num_classes=10)


def _small_vit_pair(tv):
    """A 2-layer, 64-wide ViT on 32x32 images with 16x16 patches on both sides."""
    from torchvision.models.vision_transformer import VisionTransformer

    torch_model = VisionTransformer(
        image_size=32,
        patch_size=16,
        num_layers=2,
        num_heads=4,
        hidden_dim=64,
        mlp_dim=128,
        num_classes=10,
    )
    return torch_model, SMALL_VIT


@pytest.mark.parametrize("scan", [False, True])
def test_torchvision_vit_parity_small(scan):
    tv = import_torchvision()
    torch_model, overrides = _small_vit_pair(tv)
    check_parity(
        torch_model,
        "vit_b16",
        tv_convert("vit_b16"),
        size=32,
        overrides={**overrides, "scan_layers": scan},
    )


@pytest.mark.slow
def test_torchvision_vit_b_16_parity():
    tv = import_torchvision()
    check_parity(tv.models.vit_b_16(weights=None), "vit_b16", tv_convert("vit_b16"), size=224)


def timm_convert(name):
    from jaxdl.weights.timm import convert_timm

    family = get_entry(name).family
    return lambda sd, config: convert_timm(family, sd, config)


def test_timm_vit_parity_small():
    timm = import_timm()
    torch_model = timm.create_model(
        "vit_base_patch16_224",
        pretrained=False,
        img_size=32,
        depth=2,
        embed_dim=64,
        num_heads=4,
        mlp_ratio=2.0,
        num_classes=10,
    )
    check_parity(
        torch_model,
        "vit_b16",
        timm_convert("vit_b16"),
        size=32,
        overrides=SMALL_VIT,
    )


@pytest.mark.parametrize("name", ["resnet50", "efficientnet_b0"])
def test_timm_cnn_parity(name):
    timm = import_timm()
    check_parity(timm.create_model(name, pretrained=False), name, timm_convert(name), size=64)


@pytest.mark.slow
def test_timm_vit_base_patch16_224_parity():
    timm = import_timm()
    check_parity(
        timm.create_model("vit_base_patch16_224", pretrained=False),
        "vit_b16",
        timm_convert("vit_b16"),
        size=224,
    )


def test_transform_input_is_the_preprocessing():
    """torchvision builds googlenet with transform_input=True for its weights: fed
    ImageNet-normalised images it computes what our model computes on the images our
    Preprocessing (mean = std = 0.5) makes."""
    torch = import_torch()
    tv = import_torchvision()
    from jaxdl.weights.torchvision import torchvision_preprocessing

    torch_model = tv.models.get_model(
        "googlenet", weights=None, aux_logits=False, init_weights=True, transform_input=True
    ).eval()
    sd = randomized_state_dict(torch_model)
    ours = create_model("googlenet", rngs=nnx.Rngs(0), input_shape=(64, 64, 3))
    assign(ours, tv_convert("googlenet")(sd, ours.config))
    images = np.random.default_rng(1).uniform(0, 255, size=(2, 64, 64, 3)).astype(np.float32)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    tv_in = ((images / 255.0 - mean) / std).astype(np.float32).transpose(0, 3, 1, 2).copy()
    with torch.no_grad():
        ref = torch_model(torch.from_numpy(tv_in)).numpy()
    prep = torchvision_preprocessing("googlenet")
    assert prep.resolution == 224 and prep.mean == (0.5, 0.5, 0.5)
    assert rel_err(ours(prep.apply(images, resize=False)), ref) < TOL
