"""Teacher soft labels: the teacher's logits on a transfer set, stored as a safetensors artifact.

Labelling is done once per (teacher, transfer set) and reused by every student and seed, which is
what makes distillation cheap (Hinton et al. 2015): the file holds one float32 tensor "logits" of
shape (N, C) plus string metadata (teacher, dataset, seed, ...) for lineage.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import safe_open, save_file
from torch import nn

from compress.data import all_finite
from compress.evaluate.classification import predict_logits

LOGITS_KEY = "logits"


def soft_labels(teacher: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Teacher logits on x, batched in eval mode without gradients: (N, C) float32 on CPU."""
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"soft_labels needs a non-empty batch x of shape (N, ...), got {tuple(x.shape)}")
    if not all_finite(x):
        raise ValueError("soft_labels input x contains NaN or inf; clean the transfer set first")
    logits = predict_logits(teacher, x, batch_size=batch_size)  # (N, C)
    if not all_finite(logits):
        raise ValueError("the teacher produced NaN or inf logits; check its weights and input scaling")
    return logits


def save_soft_labels(path: str | Path, logits: torch.Tensor, *, metadata: dict[str, str] | None = None) -> Path:
    """Write logits (N, C) and string metadata to `path` atomically (temp file + rename)."""
    path = Path(path)
    if logits.ndim != 2:
        raise ValueError(f"soft labels must be (N, C) logits, got shape {tuple(logits.shape)}")
    metadata = dict(metadata or {})
    bad = {k: type(v).__name__ for k, v in metadata.items() if not (isinstance(k, str) and isinstance(v, str))}
    if bad:
        raise TypeError(f"safetensors metadata must map str to str; these entries are not: {bad} "
                        "(convert values with str() or json.dumps())")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file({LOGITS_KEY: logits.detach().float().cpu().contiguous()}, tmp, metadata=metadata)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; soft labels are a shareable artifact
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_soft_labels(path: str | Path) -> tuple[torch.Tensor, dict[str, str]]:
    """Read (logits (N, C), metadata) written by `save_soft_labels`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"soft-label file {path} does not exist; create it with save_soft_labels()")
    try:
        with safe_open(str(path), "pt", device="cpu") as f:
            if LOGITS_KEY not in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                raise ValueError(f"{path} has tensors {list(f.keys())} but no {LOGITS_KEY!r}; "
                                 "it was not written by save_soft_labels()")
            return f.get_tensor(LOGITS_KEY), dict(f.metadata() or {})
    except SafetensorError as err:
        raise ValueError(f"{path} is not a readable safetensors file ({err}); regenerate the soft labels") from err
