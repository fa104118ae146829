"""Where a Shrinkwrap install keeps its state. Every path and URL is overridable by env var.

| variable                   | default                                   |
|----------------------------|-------------------------------------------|
| SHRINKWRAP_HOME            | ~/.shrinkwrap                             |
| SHRINKWRAP_DATABASE_URL    | sqlite:///$SHRINKWRAP_HOME/registry.db    |
| SHRINKWRAP_ARTIFACT_ROOT   | $SHRINKWRAP_HOME/artifacts (or fsspec URI)|
| SHRINKWRAP_EXPORT_DIR      | $SHRINKWRAP_HOME/exports                  |
| SHRINKWRAP_CACHE_DIR       | $SHRINKWRAP_HOME/cache                    |
| PREFECT_HOME               | $SHRINKWRAP_HOME/prefect (set by the CLI) |
"""

from __future__ import annotations

import os
from pathlib import Path


def shrinkwrap_home() -> Path:
    return Path(os.environ.get("SHRINKWRAP_HOME", "~/.shrinkwrap")).expanduser()


def database_url() -> str:
    url = os.environ.get("SHRINKWRAP_DATABASE_URL")
    if url:
        return url
    home = shrinkwrap_home()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'registry.db'}"


def artifact_root() -> str:
    return os.environ.get("SHRINKWRAP_ARTIFACT_ROOT") or str(shrinkwrap_home() / "artifacts")


def export_dir() -> Path:
    return Path(os.environ.get("SHRINKWRAP_EXPORT_DIR") or shrinkwrap_home() / "exports").expanduser()


def prefect_home() -> Path:
    return Path(os.environ.get("PREFECT_HOME") or shrinkwrap_home() / "prefect").expanduser()


# Names shared by flows/ (which runs the flow) and api/ (which starts it through Prefect): one home.
DEPLOYMENT_NAME = "compress-model/default"  # the Prefect deployment `POST /runs` and `shrinkwrap serve` use
RUN_TAG_PREFIX = "shrinkwrap-run"           # flow runs started for a registry run carry `shrinkwrap-run:<id>`


def run_tag(run_id: int) -> str:
    return f"{RUN_TAG_PREFIX}:{run_id}"


def run_id_from_tags(tags) -> int | None:
    """The registry run id in a flow run's tags (`shrinkwrap-run:<id>`), if any."""
    for tag in tags or []:
        prefix, _, value = tag.partition(":")
        if prefix == RUN_TAG_PREFIX and value.isdigit():
            return int(value)
    return None
