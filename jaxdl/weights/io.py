"""Reading and writing weight files safely: safetensors, and torch files through
`torch.load(weights_only=True)` only. Nothing here can execute what it loads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from jaxdl.errors import JaxdlError


def read_safetensors(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(tensors, metadata) from a .safetensors file."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise JaxdlError(f"weight file {path} does not exist")
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            return {k: f.get_tensor(k) for k in f.keys()}, meta
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        raise JaxdlError(f"{path} is not a readable safetensors file: {e}") from e


def write_safetensors(
    path: str | Path, tensors: dict[str, np.ndarray], metadata: dict | None = None
) -> None:
    """Write atomically: a temporary file renamed over the target, so a crash never leaves a
    half-written cache file under the final name."""
    from safetensors.numpy import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp), metadata=meta)
    tmp.replace(path)


def read_torch(path: str | Path) -> dict[str, np.ndarray]:
    """A torch state dict (.pt/.pth/.bin) read with `weights_only=True`.

    A file that needs unrestricted unpickling (arbitrary code) is refused, never loaded."""
    path = Path(path)
    if not path.is_file():
        raise JaxdlError(f"weight file {path} does not exist")
    try:
        import torch
    except ImportError as e:
        raise JaxdlError(
            f"reading {path} needs PyTorch (pip install torch), or convert it to safetensors"
        ) from e
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise JaxdlError(
            f"refused to load {path}: it is not a plain tensor file loadable with "
            f"weights_only=True (it would need unsafe pickle loading, which can run arbitrary "
            f"code). Save its state_dict "
            f"or convert it to safetensors. ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
        ) from e
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise JaxdlError(f"{path} holds a {type(obj).__name__}, expected a state dict of tensors")
    out = {}
    for k, v in obj.items():
        if hasattr(v, "detach"):
            out[k] = (
                v.detach().cpu().float().numpy()
                if v.is_floating_point()
                else v.detach().cpu().numpy()
            )
    return out


def read_weights(path: str | Path) -> dict[str, np.ndarray]:
    """Tensors from safetensors or a torch state dict, by file suffix."""
    p = Path(path)
    if p.suffix == ".safetensors":
        return read_safetensors(p)[0]
    if p.suffix in (".pt", ".pth", ".bin", ".ckpt"):
        return read_torch(p)
    raise JaxdlError(
        f"unknown weight file type {p.suffix!r} for {p}; expected .safetensors, .pt, .pth or .bin"
    )
