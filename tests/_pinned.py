"""Pinned trainable-parameter counts of registered models, from published sources. The registry
test battery (test_registry_battery.py) checks every one; family tests reuse them."""

PINNED = {
    # published trainable parameters with 1000 classes (unet: 2 classes, lenet5: 10).
    "lenet5": 61_706,
    "alexnet": 62_378_344,
    "vgg11": 132_863_336,
    "vgg13": 133_047_848,
    "vgg16": 138_357_544,
    "vgg19": 143_667_240,
    "vgg11_bn": 132_868_840,
    "vgg13_bn": 133_053_736,
    "vgg16_bn": 138_365_992,
    "vgg19_bn": 143_678_248,  # torchvision's *_bn counts
    "googlenet": 6_624_904,
    "inception_v3": 23_834_568,
    "inception_resnet_v2": 55_843_464,
    "xception": 22_855_952,
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "resnext50_32x4d": 25_028_904,
    "resnext101_32x8d": 88_791_336,
    "seresnet50": 28_088_024,
    "densenet121": 7_978_856,
    "densenet169": 14_149_480,
    "densenet201": 20_013_928,
    "densenet264": 33_337_704,
    "mobilenet_v1": 4_231_976,
    "mobilenet_v2": 3_504_872,
    "mobilenet_v3_small": 2_542_856,
    "mobilenet_v3_large": 5_483_032,
    "efficientnet_b0": 5_288_548,
    "efficientnet_b1": 7_794_184,
    "efficientnet_b2": 9_109_994,
    "efficientnet_b3": 12_233_232,
    "efficientnet_b4": 19_341_616,
    "efficientnet_b5": 30_389_784,
    "efficientnet_b6": 43_040_704,
    "efficientnet_b7": 66_347_960,
    "unet": 31_030_658,
    # published counts (the papers; timm for ViT-Ti/S/L; Hugging Face BertForMaskedLM, which like
    # ours has no pooler) and, for the encoder-decoder, the count from the paper's shapes
    "gpt2": 124_439_808,
    "vit_b16": 86_567_656,
    "vit_ti16": 5_717_416,
    "vit_s16": 22_050_664,
    "vit_l16": 304_326_632,
    "bert_base": 109_514_298,
    # encoder 784-256-128-32 and the mirrored decoder: sum of (n_in + 1) * n_out
    "autoencoder": 476_720,
    # 64-128-64-10: (64 + 1) * 128 + (128 + 1) * 64 + (64 + 1) * 10, torch's nn.Sequential equal
    "mlp": 17_226,
    # torchvision's weights meta "num_params" (COCO_WITH_VOC_LABELS_V1), aux head included
    "fcn_resnet50": 35_322_218,
    "fcn_resnet101": 54_314_346,
    # Krizhevsky et al. 2012, two towers: computed from the layer shapes with the groups
    "alexnet_paper": 60_965_224,
    # LeCun et al. 1998, the sum of the paper's per-layer counts (C1 156, S2 12, C3 1,516,
    # S4 32, C5 48,120, F6 10,164; the RBF centres are fixed)
    "lenet5_paper": 60_000,
}
