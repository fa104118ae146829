"""`export_model(model, dest, ...)`: weights-only, atomic, manifest-verified exports.

HF transformers models get the HF layout (compress.export.hf), zoo models the plain layout
(compress.export.plain). Every export also holds a model card `README.md` and `manifest.json` (sha256
and size of every file), and is written to a temp folder, fsynced, then renamed into place.
"""

from __future__ import annotations

import dataclasses
import json
import os
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from torch import nn

from compress.export.card import render_card
from compress.export.hf import is_hf_model, save_hf
from compress.export.manifest import MANIFEST, atomic_dir, sha256_file, write_manifest
from compress.export.plain import save_plain

LIBRARIES = ("shrinkwrap", "torch", "prefect", "bitsandbytes", "transformers", "safetensors", "sqlalchemy")


@dataclasses.dataclass(frozen=True)
class ExportResult:
    path: Path
    files: dict[str, str]  # relative name -> sha256 (manifest.json included)
    bytes: int


def library_versions() -> dict[str, str]:
    """{library: installed version} of the libraries that shape results (the one definition: registry
    runs record it, exports write it into their safetensors headers as `version.<library>`)."""
    out = {}
    for lib in LIBRARIES:
        try:
            out[lib] = importlib_metadata.version(lib)
        except importlib_metadata.PackageNotFoundError:
            continue
    return out


def _check_metadata(metadata: dict[str, Any] | None) -> dict[str, str]:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) for k in metadata):
        raise TypeError(f"metadata must be a dict with str keys (e.g. {{'recipe_hash': ...}}), got {metadata!r}")
    return {k: v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str) for k, v in metadata.items()}


def export_model(model: nn.Module, dest: str | os.PathLike, *, metadata: dict[str, Any] | None = None,
                 metrics: dict[str, Any] | None = None, lineage: list | None = None, reproduce: str | None = None,
                 tokenizer=None, sparse: bool = False, overwrite: bool = False,
                 max_shard_size: str | int = "2GB", extra_files=None) -> ExportResult:
    """Export `model` to the folder `dest` (must not exist unless `overwrite`).

    metadata: str -> str written into every safetensors header and the card (recipe_hash, parent_sha256,
    technique parameters; non-str values are JSON-encoded), plus library versions. metrics / lineage /
    reproduce go into README.md. tokenizer: saved with HF models. sparse: pruned plain models stored
    through compress.prune.sparse. max_shard_size: HF shard size. extra_files(folder): writes further files
    (e.g. GGUF) from the saved layout into the export before the manifest, so they are verified too."""
    dest = Path(dest)
    meta = {**{f"version.{k}": v for k, v in library_versions().items()}, **_check_metadata(metadata)}
    if tokenizer is not None and not is_hf_model(model):
        raise ValueError("a tokenizer can only be exported with a transformers model (HF layout)")
    if sparse and is_hf_model(model):
        raise ValueError("sparse=True is supported for plain zoo models only; export HF models with sparse=False")
    with atomic_dir(dest, overwrite=overwrite) as tmp:
        if is_hf_model(model):
            fields = save_hf(model, tmp, metadata=meta, tokenizer=tokenizer, max_shard_size=max_shard_size)
        else:
            fields = save_plain(model, tmp, metadata=meta, sparse=sparse)
        if extra_files is not None:
            extra_files(tmp)
        (tmp / "README.md").write_text(render_card(
            name=dest.name, layout=fields["layout"], architecture=str(fields["architecture"]),
            quantized=fields["quantized"], sparse=fields["sparse"], metadata=meta, metrics=metrics,
            lineage=lineage, reproduce=reproduce))
        manifest = write_manifest(tmp, {**fields, "metadata": meta})
        files = {name: entry["sha256"] for name, entry in manifest["files"].items()}
        files[MANIFEST] = sha256_file(tmp / MANIFEST)
        total = sum(entry["bytes"] for entry in manifest["files"].values()) + (tmp / MANIFEST).stat().st_size
    return ExportResult(path=dest, files=files, bytes=total)
