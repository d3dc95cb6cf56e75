"""The state-dict names and shapes of the torchvision / timm models the converters cover, for the
no-torch tests in tests/test_weights_load.py. Run from the repository root where torch,
torchvision and timm are installed: python tests/data/make_torch_state_dict_shapes.py"""

import gzip
import json
import sys

sys.path.insert(0, "tests")
from _torch import import_timm, import_torchvision

tv = import_torchvision()
timm = import_timm()
out = {}
for name, kw in [
    ("resnet18", {}),
    ("resnext50_32x4d", {}),
    ("vgg11_bn", {}),
    ("densenet121", {}),
    ("googlenet", {"aux_logits": True, "init_weights": True}),
    ("inception_v3", {"aux_logits": True, "init_weights": True}),
    ("mobilenet_v2", {}),
    ("mobilenet_v3_small", {}),
    ("mobilenet_v3_large", {}),
    ("efficientnet_b0", {}),
    ("efficientnet_b5", {}),
    ("vit_b_16", {}),
]:
    m = tv.models.get_model(name, weights=None, **kw)
    out[f"torchvision/{name}"] = {k: list(v.shape) for k, v in m.state_dict().items()}
for name in ("resnet50", "efficientnet_b0", "vit_base_patch16_224"):
    m = timm.create_model(name, pretrained=False)
    out[f"timm/{name}"] = {k: list(v.shape) for k, v in m.state_dict().items()}
json.dump(out, gzip.open("tests/data/torch_state_dict_shapes.json.gz", "wt"), separators=(",", ":"))
