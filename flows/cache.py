"""Cache keys that make a rerun redo only unfinished or changed stages.

A stage's key is sha256 over (stage name, the sha256 of every input artifact, the stage's parameters,
the code version). The code version is the package version plus a hash of the sources the stage
declares: the task's `sources[stage]` (compress/tasks/) and, for per-variant stages, the technique's
module (compress/techniques.py). Editing compress/llm/distill.py therefore invalidates the causal-LM
distill stage and what follows it, and no classification stage.
Keys are persisted on the registry's StageRun rows (`cache_key`); `find_completed_stage(cache_key=...)`
finds a finished stage from any earlier run, whose outputs (artifact ids) are reused as they are.

Why not Prefect's own task caching: results must live in the registry (one source of truth that the API
and the CLI read), survive a kill -9 of the whole process, and be keyed by artifact content, not by
Python object identity.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def params_hash(params: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(params).encode()).hexdigest()


def package_version() -> str:
    try:
        return metadata.version("shrinkwrap")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def source_files(sources: Iterable[str]) -> list[Path]:
    """The .py files of each declared source: a dotted module (a package means all its modules) or a
    path relative to the repository root. A name that resolves to nothing is an error, not a silent
    gap in the key."""
    files: list[Path] = []
    for name in sources:
        path = ROOT / name if "/" in name or name.endswith(".py") else _module_path(name)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*.py") if "__pycache__" not in p.parts)
        elif path.is_file():
            files.append(path)
        else:
            raise ValueError(f"cache source {name!r} names no module or file; fix the task's or technique's `sources`")
    return sorted(set(files))


def _module_path(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise ValueError(f"cache source {name!r} is not an importable module; fix the task's `sources`")
    origin = Path(spec.origin)
    return origin.parent if origin.name == "__init__.py" else origin


@functools.cache
def code_version(sources: tuple[str, ...]) -> str:
    """Package version + sha256 of the declared sources (cached per process)."""
    digest = hashlib.sha256(package_version().encode())
    for path in source_files(sources):
        try:
            rel = path.relative_to(ROOT)
        except ValueError:
            rel = path
        digest.update(str(rel).encode() + b"\0" + path.read_bytes() + b"\0")
    return f"{package_version()}+{digest.hexdigest()[:16]}"


def cache_key(stage: str, *, params: Mapping[str, Any], inputs: Mapping[str, str], sources: Iterable[str] = (),
              code: str | None = None) -> str:
    """sha256 of the stage name, its input artifacts ({role: sha256}), parameters and the code version
    of the declared `sources` (`code` overrides it)."""
    blob = canonical({"stage": stage, "inputs": dict(inputs), "params": dict(params),
                      "code": code if code is not None else code_version(tuple(sorted(sources)))})
    return hashlib.sha256(blob.encode()).hexdigest()
