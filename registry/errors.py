"""Domain errors of the registry. Each also inherits the matching built-in, so callers that only know
`LookupError`/`ValueError` still catch them; the API maps them to HTTP codes in one handler:

| error          | HTTP | raised when                                                        |
|----------------|------|--------------------------------------------------------------------|
| NotFound       | 404  | a model / version / alias / run / artifact / blob does not exist   |
| AlreadyExists  | 409  | a unique name or number is taken                                   |
| InvalidState   | 409  | a status transition or argument does not fit the current state     |
| GateFailed     | 409  | a promotion gate on metrics failed (`.failures` lists which)       |
| SchemaOutOfDate| 503  | the database schema is not at the Alembic head                     |
| ArtifactCorrupt| 500  | a stored blob's bytes no longer match its sha256                   |
"""

from __future__ import annotations


class RegistryError(Exception):
    """Base class of every registry error."""


class NotFound(RegistryError, LookupError):
    """The requested row or blob does not exist."""


class AlreadyExists(RegistryError):
    """A unique key (model name, alias, version number, token hash) is already taken."""


class InvalidState(RegistryError, ValueError):
    """The request does not fit the current state (e.g. finishing a run that already finished)."""


class GateFailed(InvalidState):
    """A promotion was refused because one or more metric gates failed."""

    def __init__(self, message: str, failures: list[str]):
        super().__init__(message + ": " + "; ".join(failures))
        self.failures = list(failures)


class SchemaOutOfDate(RegistryError):
    """The database schema revision is not the migration head; the message carries the fix."""

    def __init__(self, current: str | None, head: str | None, url: str = ""):
        where = f" at {url}" if url else ""
        super().__init__(
            f"registry database{where} is at schema revision {current or '<empty>'}, this code needs {head}; "
            f"run `shrinkwrap db upgrade` (with SHRINKWRAP_DATABASE_URL pointing at that database)")
        self.current = current
        self.head = head


class ArtifactCorrupt(RegistryError, ValueError):
    """A blob's content does not hash to its name: the file was modified or truncated on disk."""
