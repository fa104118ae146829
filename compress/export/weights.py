"""Reading a weights file safely: safetensors always; pickles (.bin/.pt/.pth/.pkl) only when the caller
explicitly allows them, and then only through `torch.load(weights_only=True)`.

Why: unpickling runs arbitrary code, so a downloaded or tampered checkpoint must never be unpickled
silently; `weights_only=True` restricts the unpickler to tensors and plain containers.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path

import torch
from safetensors.torch import load_file

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
_HEADER_ALIGN = 8


class PickleRefused(ValueError):
    """A pickle-based weights file was found and the caller did not pass allow_pickle=True."""


def is_pickle(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in PICKLE_SUFFIXES


def refuse_pickle(path: str | os.PathLike) -> None:
    raise PickleRefused(f"{path} is a pickle file, which can run code when loaded; refusing it. Convert it to "
                        "safetensors, or pass allow_pickle=True if you trust its source (it is then read with "
                        "torch.load(weights_only=True))")


def load_weights(path: str | os.PathLike, *, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """State dict from a .safetensors file, or from a pickle when `allow_pickle` (weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        return load_file(path)
    if not is_pickle(path):
        raise ValueError(f"{path}: unknown weights format {path.suffix!r}; expected .safetensors "
                         f"(or a pickle {PICKLE_SUFFIXES} with allow_pickle=True)")
    if not allow_pickle:
        refuse_pickle(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors (got {type(state).__name__})")
    return state


def merge_safetensors_metadata(path: Path, metadata: dict[str, str]) -> None:
    """Merge `metadata` into the `__metadata__` of a safetensors file (header rewritten, data copied), with
    sorted keys so the same model and metadata always give the same bytes (safetensors itself writes
    metadata in hash-map order)."""
    with open(path, "rb") as src:
        (length,) = struct.unpack("<Q", src.read(8))
        header = json.loads(src.read(length))
        merged = {**header.pop("__metadata__", {}), **metadata}
        header = {"__metadata__": dict(sorted(merged.items())), **header}  # sorted: byte-reproducible
        blob = json.dumps(header, separators=(",", ":")).encode()
        blob += b" " * (-len(blob) % _HEADER_ALIGN)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as dst:
            dst.write(struct.pack("<Q", len(blob)))
            dst.write(blob)
            shutil.copyfileobj(src, dst, 1 << 20)
    tmp.replace(path)
