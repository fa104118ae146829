"""API fixtures: a migrated database (the lead's `db_url`: SQLite, then PostgreSQL), an app over it with a
fresh artifact store, a TestClient, tokens of each scope, and `seed` (a small registry: model, versions
with metrics, aliases-ready lineage, a run with stages, file and directory artifacts)."""

from __future__ import annotations

import pytest
from api_testing import Seed, seed_registry
from fastapi.testclient import TestClient

import registry.repository as repo
from api.main import create_app
from api.settings import ApiSettings, default_deployment
from registry.session import dispose_engines, init_db, make_engine, session_scope


@pytest.fixture
def api_db(db_url):
    init_db(db_url)
    yield db_url
    dispose_engines()


@pytest.fixture
def sqlite_db(tmp_path):
    """A migrated SQLite database, for tests about HTTP behaviour that the backend cannot change."""
    url = f"sqlite:///{tmp_path / 'api.db'}"
    init_db(url)
    yield url
    dispose_engines()


def _client(url, tmp_path, **settings):
    app = create_app(ApiSettings(database_url=url, artifact_root=str(tmp_path / "artifacts"), **settings))
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def make_client(api_db, tmp_path):
    """make_client(**ApiSettings overrides) -> TestClient over the fresh database (lifespan running)."""
    clients = []

    def make(**settings):
        client = _client(api_db, tmp_path, **settings)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client):
    return make_client()


@pytest.fixture
def sqlite_client(sqlite_db, tmp_path):
    with _client(sqlite_db, tmp_path) as client:
        yield client


def _token(url: str, scopes: list[str]) -> str:
    engine = make_engine(url)
    try:
        with session_scope(engine) as s:
            return repo.create_token(s, name="+".join(scopes), scopes=scopes)[1]
    finally:
        engine.dispose()


@pytest.fixture
def admin(api_db) -> dict[str, str]:
    return {"Authorization": f"Bearer {_token(api_db, ['admin'])}"}


@pytest.fixture
def reader(api_db) -> dict[str, str]:
    return {"Authorization": f"Bearer {_token(api_db, ['read'])}"}


@pytest.fixture
def sqlite_admin(sqlite_db) -> dict[str, str]:
    return {"Authorization": f"Bearer {_token(sqlite_db, ['admin'])}"}


@pytest.fixture
def seed(api_db, tmp_path) -> Seed:
    return seed_registry(api_db, tmp_path / "artifacts", tmp_path)


@pytest.fixture(scope="session")
def deployment(prefect):
    """The real compression flow registered as deployment `compress-model/default` on the test Prefect
    server (never executed: no runner serves it), so POST /runs creates real, scheduled flow runs."""
    from flows.flow import compress_model

    name = default_deployment()
    compress_model.to_deployment(name=name.split("/", 1)[1]).apply()
    return name
