"""Settings of the model server (`shrinkwrap serve-model`), from the command line or the environment
(`ServeSettings.from_env()`: what each uvicorn worker process reads with --workers > 1).

| variable                          | default   | meaning                                                    |
|-----------------------------------|-----------|------------------------------------------------------------|
| SHRINKWRAP_SERVE_MODEL            | (needed)  | NAME@ALIAS (followed) or NAME:VERSION (pinned)             |
| SHRINKWRAP_SERVE_MAX_BATCH        | 32        | samples per forward pass                                   |
| SHRINKWRAP_SERVE_MAX_WAIT_MS      | 5         | how long the first request of a batch waits for company    |
| SHRINKWRAP_SERVE_MAX_QUEUE        | 256       | queued requests before 503 + Retry-After                   |
| SHRINKWRAP_SERVE_TIMEOUT_S        | 30        | per request, queueing + compute; then 504                  |
| SHRINKWRAP_SERVE_POLL_S           | 10        | how often the alias is looked up (0: never; /admin/reload) |
| SHRINKWRAP_SERVE_COMPILE          | false     | torch.compile the model at load                            |
| SHRINKWRAP_SERVE_TOKEN_CACHE_S    | 10        | how long a checked bearer token is trusted without the DB  |
Database, artifact store, open reads and body size: the admin API's variables (api/settings.py).
"""

from __future__ import annotations

import dataclasses
import os

from api.settings import ApiSettings, _env_bool, _env_number


@dataclasses.dataclass(frozen=True)
class ServeSettings:
    model: str
    max_batch: int = 32
    max_wait_ms: float = 5.0
    max_queue: int = 256
    timeout_s: float = 30.0
    poll_s: float = 10.0
    compile: bool = False
    token_cache_s: float = 10.0
    api: ApiSettings = dataclasses.field(default_factory=ApiSettings.from_env)

    def __post_init__(self):
        checks = [(1 <= self.max_batch <= 1024, "max_batch must be in 1..1024", self.max_batch),
                  (0 <= self.max_wait_ms <= 10_000, "max_wait_ms must be in 0..10000", self.max_wait_ms),
                  (self.max_queue >= 1, "max_queue must be >= 1", self.max_queue),
                  (self.timeout_s > 0, "timeout_s must be > 0", self.timeout_s),
                  (self.poll_s >= 0, "poll_s must be >= 0 (0: no polling)", self.poll_s),
                  (self.token_cache_s >= 0, "token_cache_s must be >= 0", self.token_cache_s)]
        for ok, what, value in checks:
            if not ok:
                raise ValueError(f"{what}, got {value!r}; fix the flag or its SHRINKWRAP_SERVE_* variable")

    @classmethod
    def from_env(cls) -> ServeSettings:
        model = os.environ.get("SHRINKWRAP_SERVE_MODEL", "")
        if not model:
            raise ValueError("SHRINKWRAP_SERVE_MODEL is not set; set it to NAME@ALIAS or NAME:VERSION")
        return cls(model=model,
                   max_batch=int(_env_number("SHRINKWRAP_SERVE_MAX_BATCH", 32)),
                   max_wait_ms=_env_number("SHRINKWRAP_SERVE_MAX_WAIT_MS", 5.0, float),
                   max_queue=int(_env_number("SHRINKWRAP_SERVE_MAX_QUEUE", 256)),
                   timeout_s=_env_number("SHRINKWRAP_SERVE_TIMEOUT_S", 30.0, float),
                   poll_s=_env_number("SHRINKWRAP_SERVE_POLL_S", 10.0, float),
                   compile=_env_bool("SHRINKWRAP_SERVE_COMPILE", False),
                   token_cache_s=_env_number("SHRINKWRAP_SERVE_TOKEN_CACHE_S", 10.0, float))

    def to_env(self) -> dict[str, str]:
        """The variables that make `from_env` give these settings back (for uvicorn worker processes)."""
        return {"SHRINKWRAP_SERVE_MODEL": self.model, "SHRINKWRAP_SERVE_MAX_BATCH": str(self.max_batch),
                "SHRINKWRAP_SERVE_MAX_WAIT_MS": str(self.max_wait_ms),
                "SHRINKWRAP_SERVE_MAX_QUEUE": str(self.max_queue), "SHRINKWRAP_SERVE_TIMEOUT_S": str(self.timeout_s),
                "SHRINKWRAP_SERVE_POLL_S": str(self.poll_s), "SHRINKWRAP_SERVE_COMPILE": str(self.compile).lower(),
                "SHRINKWRAP_SERVE_TOKEN_CACHE_S": str(self.token_cache_s)}
