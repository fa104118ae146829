"""Registry fixtures: `url` is the lead's `db_url` (fresh SQLite / PostgreSQL database) migrated to head;
`store` is a fresh local artifact store; `session` is one committed-on-exit `session_scope`."""

from __future__ import annotations

import pytest

from registry.session import dispose_engines, init_db, session_scope
from registry.store import ArtifactStore


@pytest.fixture
def url(db_url):
    init_db(db_url)
    yield db_url
    dispose_engines()  # close pooled connections before the database is dropped


@pytest.fixture
def store(tmp_path):
    return ArtifactStore(tmp_path / "artifacts")


@pytest.fixture
def session(url):
    with session_scope(url) as s:
        yield s


@pytest.fixture
def make_file(tmp_path):
    """make_file(b"bytes", name=None) -> Path of a new file holding those bytes."""
    counter = iter(range(10**6))

    def make(data: bytes, name: str | None = None):
        path = tmp_path / "inputs" / (name or f"file-{next(counter)}.bin")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    return make
