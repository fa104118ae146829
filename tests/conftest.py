"""Session-wide test configuration.

- Environment isolation: SHRINKWRAP_HOME and PREFECT_HOME point at a temp folder, set before any
  test module imports Prefect; derived assets (the converted SmolLM2 teacher) are cached in
  `.cache/` at the repository root so a developer converts them once.
- `pg_url`: a throwaway PostgreSQL database for the whole session (dropped at the end).
- `db_url`: parametrised over SQLite and PostgreSQL; each test gets a fresh, empty database.
- `prefect`: one session-wide `prefect_test_harness` (a real temporary Prefect server).
- `gpu` tests are skipped without CUDA.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_TMP_HOME = Path(tempfile.mkdtemp(prefix="shrinkwrap-test-home-"))
os.environ["SHRINKWRAP_HOME"] = str(_TMP_HOME)
os.environ.setdefault("SHRINKWRAP_CACHE_DIR", str(ROOT / ".cache"))
os.environ["PREFECT_HOME"] = str(_TMP_HOME / "prefect")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "90"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
for _var in ("SHRINKWRAP_DATABASE_URL", "SHRINKWRAP_ARTIFACT_ROOT", "SHRINKWRAP_EXPORT_DIR", "PREFECT_API_URL"):
    os.environ.pop(_var, None)

PG_ADMIN_URL = os.environ.get("SHRINKWRAP_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA; run on a CUDA machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


def _pg_engine():
    from sqlalchemy import create_engine

    return create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)


def create_pg_database(prefix: str = "sw_test") -> str:
    """Create an empty PostgreSQL database and return its URL (drop it with `drop_pg_database`)."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    engine = _pg_engine()
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as err:
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is not reachable ({err.orig}); run scripts/ensure-postgres "
                    "or set SHRINKWRAP_TEST_PG_URL", pytrace=False)
    finally:
        engine.dispose()
    return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def drop_pg_database(url: str) -> None:
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    engine = _pg_engine()
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture(scope="session")
def pg_url():
    url = create_pg_database("sw_session")
    yield url
    drop_pg_database(url)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    """A fresh, empty database: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.db'}"
        return
    url = create_pg_database()
    yield url
    drop_pg_database(url)


@pytest.fixture(scope="session")
def prefect():
    """One real temporary Prefect server for the whole session (started on first use)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
