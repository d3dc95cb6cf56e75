"""Importing torch, torchvision and timm for the parity tests, skipping cleanly where absent.

The torchvision wheel installed next to a CPU-only torch build may fail to load its C extension
(`torchvision._C`); its import then dies in torchvision/_meta_registrations.py, which registers
fake (meta) kernels for `torchvision::nms`, `roi_align`, ... with `torch.library.register_fake`,
and that raises "operator torchvision::nms does not exist" because the extension that would have
defined those operators' schemas never loaded. The classification models are pure torch.nn and
need none of these operators, so `import_torchvision` retries the import with `register_fake`
turned into a no-op for exactly the `torchvision::` operators whose schema does not exist (every
other registration goes through unchanged), and restores `register_fake` afterwards.
"""

from __future__ import annotations

import sys

import pytest


def import_torch():
    return pytest.importorskip("torch", reason="parity tests against torch need PyTorch")


def import_torchvision():
    torch = import_torch()
    try:
        import torchvision
    except ImportError as e:
        pytest.skip(f"parity tests against torchvision need torchvision ({e})")
    except RuntimeError as e:
        if "torchvision::" not in str(e) or "does not exist" not in str(e):
            raise
        for mod in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[mod]  # the half-imported package
        original = torch.library.register_fake

        def register_fake(op, *args, **kwargs):
            if isinstance(op, str) and op.startswith("torchvision::"):
                try:
                    torch._C._dispatch_find_schema_or_throw(op, "")
                except RuntimeError:
                    return lambda fn: fn  # no schema: the C extension did not load
            return original(op, *args, **kwargs)

        torch.library.register_fake = register_fake
        try:
            import torchvision
        finally:
            torch.library.register_fake = original
    return torchvision


def import_timm():
    import_torchvision()  # timm imports torchvision when it is installed
    return pytest.importorskip("timm", reason="parity tests against timm need timm")
