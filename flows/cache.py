"""Cache keys that make a rerun redo only unfinished or changed stages.

A stage's key is sha256 over (stage name, the sha256 of every input artifact, the stage's parameters,
the code version). The code version is the package version plus a hash of the compress/ sources the
stage runs, so editing `compress/prune/` invalidates pruning and everything after it, nothing before.
Keys are persisted on the registry's StageRun rows (`cache_key`); `find_completed_stage(cache_key=...)`
finds a finished stage from any earlier run, whose outputs (artifact ids) are reused as they are.

Why not Prefect's own task caching: results must live in the registry (one source of truth that the API
and the CLI read), survive a kill -9 of the whole process, and be keyed by artifact content, not by
Python object identity.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# compress/ sources each stage runs (files or folders, relative to the repository root).
STAGE_SOURCES: dict[str, tuple[str, ...]] = {
    "dataset": ("compress/data.py", "compress/assets.py"),
    "teacher": ("compress/teacher.py", "compress/models.py", "compress/train.py", "compress/evaluate/classification.py"),
    "teacher_data": ("compress/distill/soft_labels.py",),
    "distill": ("compress/distill", "compress/models.py", "compress/train.py", "compress/evaluate/classification.py"),
    "prune": ("compress/prune", "compress/train.py"),
    "quantize": ("compress/quantize", "compress/export"),
    "evaluate": ("compress/evaluate", "compress/quantize", "compress/export"),
    "export": ("compress/export",),
    "register": (),
}


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def params_hash(params: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(params).encode()).hexdigest()


def package_version() -> str:
    try:
        return metadata.version("shrinkwrap")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _source_files(paths: Iterable[str]) -> list[Path]:
    files: list[Path] = []
    for rel in paths:
        path = ROOT / rel
        if path.is_dir():
            files += sorted(p for p in path.rglob("*.py") if "__pycache__" not in p.parts)
        elif path.is_file():
            files.append(path)
    return files


@functools.cache
def code_version(stage: str) -> str:
    """Package version + sha256 of the stage's compress/ sources (cached per process)."""
    if stage not in STAGE_SOURCES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {sorted(STAGE_SOURCES)}")
    digest = hashlib.sha256(package_version().encode())
    for path in _source_files(STAGE_SOURCES[stage]):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return f"{package_version()}+{digest.hexdigest()[:16]}"


def cache_key(stage: str, *, params: Mapping[str, Any], inputs: Mapping[str, str], code: str | None = None) -> str:
    """sha256 of the stage name, its input artifacts ({role: sha256}), parameters and code version."""
    blob = canonical({"stage": stage, "inputs": dict(inputs), "params": dict(params),
                      "code": code if code is not None else code_version(stage)})
    return hashlib.sha256(blob.encode()).hexdigest()
