"""`load_export(path)`: verify the manifest, then rebuild the model of an export.

Nothing is deserialised before every file's size and sha256 match the manifest, so a corrupt or
truncated export fails with `ExportCorrupt` naming the file. Pickle weights are refused unless
`allow_pickle=True`, and even then only read with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from compress.export.hf import load_hf
from compress.export.manifest import verify_export
from compress.export.plain import load_plain


def load_export(path: str | os.PathLike, *, allow_pickle: bool = False, use_bitsandbytes: bool | None = None,
                device_map: str | dict | None = None) -> nn.Module:
    """The model of the export folder `path`, in eval mode.

    use_bitsandbytes: None = use it for quantized exports when installed; False = dequantize quantized
    layers in pure torch into plain nn.Linear (what happens where bitsandbytes is absent).
    device_map: HF layout only (default: first CUDA device for quantized models, else CPU)."""
    root = Path(path)
    manifest = verify_export(root)
    layout = manifest.get("layout")
    if layout == "plain":
        return load_plain(root, manifest, allow_pickle=allow_pickle, use_bitsandbytes=use_bitsandbytes)
    if layout == "hf":
        return load_hf(root, manifest, allow_pickle=allow_pickle, use_bitsandbytes=use_bitsandbytes,
                       device_map=device_map)
    raise ValueError(f"{root}: unknown export layout {layout!r} in manifest.json; expected 'plain' or 'hf' "
                     "(was it written by a newer shrinkwrap?)")
