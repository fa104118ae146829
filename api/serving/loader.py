"""From `NAME@ALIAS` or `NAME:VERSION` to a ready predictor: resolve the version in the registry, bring its
export folder out of the artifact store, load it once with `compress.export.load_export` (which verifies
every file against the export's manifest first), and wrap it in the predictor for its kind of model.

Exports are materialised under `$SHRINKWRAP_HOME/serving/<artifact sha256>` (atomically: a temp folder
renamed into place), so a restart or a second worker reuses them; `load_export` re-verifies every time.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from api.serving.generation import CausalLM

if TYPE_CHECKING:
    from torch import nn
from api.serving.predictors import ArrayClassifier, TextClassifier, architecture
from registry import repository as repo
from registry.config import shrinkwrap_home
from registry.session import session_scope
from registry.store import ArtifactStore

log = logging.getLogger("shrinkwrap.serving")
REF_RE = re.compile(r"^(?P<name>[^@:\s]+)(?:@(?P<alias>[a-z][a-z0-9_-]*)|:(?P<version>[0-9]+))$")


@dataclasses.dataclass(frozen=True)
class ModelRef:
    """`NAME@ALIAS` (follows the alias) or `NAME:VERSION` (pinned)."""

    name: str
    alias: str | None = None
    version: int | None = None

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        match = REF_RE.match(text or "")
        if match is None:
            raise ValueError(f"model reference {text!r} is not NAME@ALIAS or NAME:VERSION (e.g. mnist@production "
                             "or mnist:3)")
        version = match["version"]
        return cls(match["name"], match["alias"], int(version) if version else None)

    def __str__(self) -> str:
        return f"{self.name}@{self.alias}" if self.alias else f"{self.name}:{self.version}"


@dataclasses.dataclass(frozen=True)
class Resolved:
    name: str
    version: int
    artifact_sha256: str


@dataclasses.dataclass(frozen=True)
class Loaded:
    """A loaded version: what requests are validated against and run on."""

    resolved: Resolved
    predictor: object
    path: Path



def make_predictor(model: nn.Module, tokenizer=None):
    """The predictor for `model`: the first predictor class that accepts it."""
    for cls in (ArrayClassifier, TextClassifier, CausalLM):
        if cls.accepts(model):
            return cls.from_export(model, tokenizer)
    raise ValueError(f"cannot serve {type(model).__name__} (architecture {architecture(model)!r}): the server "
                     "serves zoo classifiers, transformers sequence classifiers and causal LMs")

def resolve(engine, ref: ModelRef) -> Resolved:
    """The version `ref` names now (registry errors NotFound etc. propagate)."""
    with session_scope(engine, readonly=True) as session:
        if ref.alias is not None:
            row = repo.get_version_by_alias(session, model_name=ref.name, alias=ref.alias)
        else:
            row = repo.get_version(session, model_name=ref.name, version=ref.version)
        artifact = repo.get_artifact(session, artifact_id=row.artifact_id)
        if not artifact.is_dir:
            raise ValueError(f"{ref.name} version {row.version} is artifact {artifact.id} of kind {artifact.kind!r}, "
                             "a single file; the server loads export folders (kind 'export')")
        return Resolved(ref.name, row.version, artifact.sha256)


def materialize(store: ArtifactStore, sha256: str, root: Path | None = None) -> Path:
    """The export folder of artifact `sha256` on local disk (reused when already there)."""
    root = root or shrinkwrap_home() / "serving"
    target = root / sha256
    if (target / "manifest.json").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{sha256[:12]}-", dir=root))
    try:
        store.materialize_dir(sha256, tmp)
        try:
            os.rename(tmp, target)
        except OSError:  # another worker got there first
            if not (target / "manifest.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_tokenizer(path: Path):
    if not (path / "tokenizer_config.json").is_file():
        return None
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_version(engine, store: ArtifactStore, resolved: Resolved, *, compile: bool = False,
                 cache_root: Path | None = None) -> Loaded:
    """Load `resolved`'s export (manifest verified) and build its predictor."""
    from compress.export import load_export

    path = materialize(store, resolved.artifact_sha256, cache_root)
    model = load_export(path)
    predictor = make_predictor(model, load_tokenizer(path))
    if compile:
        predictor.model = torch.compile(model, dynamic=True)
        try:
            predictor.warmup()  # compiles now, not inside the first requests' timeouts
        except Exception as err:  # noqa: BLE001 - an uncompilable model still serves, eagerly
            log.warning("torch.compile failed for %s version %d (%s); serving it uncompiled",
                        resolved.name, resolved.version, err)
            predictor.model = model
    predictor.warmup()
    log.info("loaded %s version %d from %s (%s)", resolved.name, resolved.version, path, type(predictor).__name__)
    return Loaded(resolved, predictor, path)
