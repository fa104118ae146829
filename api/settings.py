"""Settings of the admin API, read from the environment once per app (`ApiSettings.from_env()`).

| variable                         | default                          | meaning                                      |
|----------------------------------|----------------------------------|----------------------------------------------|
| SHRINKWRAP_DATABASE_URL          | sqlite under SHRINKWRAP_HOME     | registry database (registry/config.py)       |
| SHRINKWRAP_ARTIFACT_ROOT         | $SHRINKWRAP_HOME/artifacts       | artifact store root (registry/config.py)     |
| SHRINKWRAP_API_OPEN_READS        | false                            | true: GET routes need no token               |
| SHRINKWRAP_API_MAX_BODY_BYTES    | 1048576 (1 MiB)                  | larger request bodies get 413                |
| SHRINKWRAP_API_DEPLOYMENT        | registry.config.DEPLOYMENT_NAME  | Prefect deployment that `POST /runs` starts  |
| SHRINKWRAP_API_PREFECT_TIMEOUT_S | 5                                | timeout of each Prefect API call             |
| SHRINKWRAP_API_DB_CONCURRENCY    | 1 on SQLite, 10 otherwise        | requests inside a DB transaction at once     |
| PREFECT_API_URL                  | (Prefect's own default)          | Prefect server that runs are triggered on    |

Reads are closed by default: a registry holds model lineage and metrics that an operator may not
want on an open port, so opening them is an explicit choice.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from registry.config import artifact_root, database_url

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name}={raw!r} is not a boolean; use one of true/false/1/0/yes/no")


def _env_number(name: str, default: float, kind: type = int) -> float:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a {kind.__name__}; set it to e.g. {default}") from None


def default_deployment() -> str:
    """The deployment `shrinkwrap serve` creates (named once, in registry.config)."""
    from registry.config import DEPLOYMENT_NAME

    return DEPLOYMENT_NAME


@dataclass(frozen=True)
class ApiSettings:
    database_url: str = field(default_factory=database_url)
    artifact_root: str = field(default_factory=artifact_root)
    open_reads: bool = False
    max_body_bytes: int = 1 << 20  # recipes and alias requests are a few KiB; 1 MiB is generous
    deployment: str = field(default_factory=default_deployment)
    prefect_timeout_s: float = 5.0
    # Below the threadpool (40) and the PostgreSQL pool (5 + 10 overflow): see api/deps.py Db. SQLite
    # runs one write transaction at a time (BEGIN IMMEDIATE) and its busy handler waits by sleeping, so
    # queueing requests on the event loop (1) beats letting them poll the lock. None: pick by backend.
    db_concurrency: int | None = None
    fast_reads: bool = True  # api/fastpath.py: the version list and metrics without FastAPI's per-request work
    # api/fastpath.py runs its reads on the event loop instead of a worker thread: the hop costs ~40% of a fast
    # read's CPU. Only where a read cannot wait on the network: None = on for SQLite (WAL: readers never
    # wait for writers), off for PostgreSQL.
    inline_reads: bool | None = None

    def __post_init__(self):
        sqlite = self.database_url.startswith("sqlite")
        if self.db_concurrency is None:
            object.__setattr__(self, "db_concurrency", 1 if sqlite else 10)
        if self.inline_reads is None:
            object.__setattr__(self, "inline_reads", sqlite)
        if not 1 <= self.db_concurrency <= 15:
            raise ValueError(f"db_concurrency must be in 1..15 (the database pool holds 15), got "
                             f"{self.db_concurrency}; fix SHRINKWRAP_API_DB_CONCURRENCY")
        if self.max_body_bytes < 1024:
            raise ValueError(f"max_body_bytes must be >= 1024, got {self.max_body_bytes}; "
                             "set SHRINKWRAP_API_MAX_BODY_BYTES to e.g. 1048576")
        if self.prefect_timeout_s <= 0:
            raise ValueError(f"prefect_timeout_s must be > 0, got {self.prefect_timeout_s}; "
                             "set SHRINKWRAP_API_PREFECT_TIMEOUT_S to e.g. 5")
        if "/" not in self.deployment:
            raise ValueError(f"deployment must look like 'flow-name/deployment-name', got {self.deployment!r}; "
                             "fix SHRINKWRAP_API_DEPLOYMENT")

    @classmethod
    def from_env(cls, **overrides) -> ApiSettings:
        values = {
            "open_reads": _env_bool("SHRINKWRAP_API_OPEN_READS", False),
            "fast_reads": _env_bool("SHRINKWRAP_API_FAST_READS", True),
            "inline_reads": (_env_bool("SHRINKWRAP_API_INLINE_READS", False)
                             if os.environ.get("SHRINKWRAP_API_INLINE_READS") else None),
            "max_body_bytes": int(_env_number("SHRINKWRAP_API_MAX_BODY_BYTES", 1 << 20)),
            "deployment": os.environ.get("SHRINKWRAP_API_DEPLOYMENT") or default_deployment(),
            "prefect_timeout_s": _env_number("SHRINKWRAP_API_PREFECT_TIMEOUT_S", 5.0, float),
            "db_concurrency": (int(_env_number("SHRINKWRAP_API_DB_CONCURRENCY", 10))
                               if os.environ.get("SHRINKWRAP_API_DB_CONCURRENCY") else None),
        }
        values.update(overrides)
        return cls(**values)
