"""api/fastpath.py answers the version list and a version's metrics without FastAPI's per-request machinery.
It must send exactly what the FastAPI routes send, engage only for ordinary requests, and leave every other
request (errors, odd queries, a token due its last-used stamp) to the routes."""

from __future__ import annotations

import pytest
from api_testing import assert_error

import registry.repository as repo
from registry.models import ApiToken
from registry.session import make_engine, session_scope


@pytest.fixture
def pair(make_client, seed, api_db, reader):
    """(fast, plain): two apps over the same seeded registry, the fast path on and off; version 2 carries
    aliases and a description with quotes, a backslash and non-ASCII, and a spread of metric values. The
    `reader` token is used once first (a never-used token goes through the route, which stamps it)."""
    engine = make_engine(api_db)
    try:
        with session_scope(engine) as s:
            repo.set_alias(s, model_name=seed.model, version=2, alias="staging")
            repo.set_alias(s, model_name=seed.model, version=2, alias="production")
            repo.update_version(s, model_name=seed.model, version=2, description='naïve "quoted" \\ ✓ <b>')
            v2 = repo.get_version(s, model_name=seed.model, version=2)
            repo.log_metrics(s, metrics={"tiny": 1e-7, "big": 123456789.0, "third": 1 / 3, "zero": 0.0,
                                         "negative": -2.5}, version_id=v2.id)
    finally:
        engine.dispose()
    fast, plain = make_client(), make_client(fast_reads=False)
    assert fast.get(f"/models/{seed.model}", headers=reader).status_code == 200  # stamps last_used_at
    return fast, plain


def served(client) -> int:
    return client.app.state.fast_reads_served


ORDINARY = [("/versions", {}), ("/versions", {"limit": 2}), ("/versions", {"limit": 1, "offset": 1}),
            ("/versions", {"offset": 2}), ("/versions", {"offset": 99}), ("/versions", {"limit": 1000}),
            ("/versions/2/metrics", {}), ("/versions/1/metrics", {})]


@pytest.mark.parametrize(("suffix", "params"), ORDINARY)
def test_fast_reads_send_the_routes_bytes(pair, seed, reader, suffix, params):
    fast, plain = pair
    path = f"/models/{seed.model}{suffix}"
    before = served(fast)
    got, want = fast.get(path, params=params, headers=reader), plain.get(path, params=params, headers=reader)
    assert got.status_code == want.status_code == 200
    assert served(fast) == before + 1 and served(plain) == 0  # the fast path answered, the plain app never does
    assert got.content == want.content
    assert got.headers["content-type"] == want.headers["content-type"] == "application/json"
    assert got.headers["content-length"] == want.headers["content-length"]
    if suffix == "/versions" and not params:
        body = got.json()
        assert [v["version"] for v in body["data"]] == [3, 2, 1] and body["count"] == 3
        assert body["data"][1]["aliases"] == ["production", "staging"]
        assert body["data"][1]["description"] == 'naïve "quoted" \\ ✓ <b>'
        assert body["data"][0]["created_at"].endswith("Z")


FALL_THROUGH = [
    ("/versions", {"limit": 0}, 422), ("/versions", {"limit": 1001}, 422), ("/versions", {"limit": "x"}, 422),
    ("/versions", {"offset": -1}, 422), ("/versions", {"stauts": "x"}, 422), ("/versions", {"limit": "+5"}, 200),
    ("/versions/9/metrics", {}, 404), ("/versions/0/metrics", {}, 422), ("/versions/3/metrics", {"x": 1}, 422),
    ("/versions/99999999999/metrics", {}, 422),
]


@pytest.mark.parametrize(("suffix", "params", "status"), FALL_THROUGH)
def test_anything_unusual_is_left_to_the_route(pair, seed, reader, suffix, params, status):
    fast, plain = pair
    path = f"/models/{seed.model}{suffix}"
    got, want = fast.get(path, params=params, headers=reader), plain.get(path, params=params, headers=reader)
    assert got.status_code == want.status_code == status
    assert got.content == want.content and served(fast) == 0


def test_unknown_model_and_auth_failures_come_from_the_route(pair, seed, reader, api_db):
    fast, _ = pair
    assert_error(fast.get("/models/nope/versions", headers=reader), 404, "not_found")
    assert_error(fast.get("/models/nope/versions/1/metrics", headers=reader), 404, "not_found")
    assert_error(fast.get(f"/models/{seed.model}/versions"), 401, "unauthorized")
    assert_error(fast.get(f"/models/{seed.model}/versions", headers={"Authorization": "Bearer sw_wrong"}), 401)
    assert_error(fast.get(f"/models/{seed.model}/versions", headers={"Authorization": "Basic abc"}), 401)
    assert served(fast) == 0
    # a revoked token is refused on the fast path's turf too
    engine = make_engine(api_db)
    try:
        with session_scope(engine) as s:
            token_id = s.query(ApiToken.id).filter(ApiToken.name == "read").scalar()
            repo.revoke_token(s, token_id=token_id)
    finally:
        engine.dispose()
    assert_error(fast.get(f"/models/{seed.model}/versions", headers=reader), 401, "unauthorized")
    assert served(fast) == 0


def test_a_token_due_its_stamp_goes_through_the_route_once(make_client, seed, api_db):
    engine = make_engine(api_db)
    try:
        with session_scope(engine) as s:
            row, token = repo.create_token(s, name="fresh", scopes=["read"])
            token_id = row.id
        fast = make_client()
        headers = {"Authorization": f"Bearer {token}"}
        path = f"/models/{seed.model}/versions"
        assert fast.get(path, headers=headers).status_code == 200
        assert served(fast) == 0  # never used: the route answered and stamped it
        with session_scope(engine) as s:
            assert repo.get_token(s, token_id=token_id).last_used_at is not None
        assert fast.get(path, headers=headers).status_code == 200
        assert served(fast) == 1  # stamped a moment ago: the fast path answers
    finally:
        engine.dispose()


def test_open_reads_without_a_token_are_served_fast(make_client, seed):
    fast = make_client(open_reads=True)
    r = fast.get(f"/models/{seed.model}/versions", params={"limit": 1})
    assert r.status_code == 200 and r.json()["count"] == 3 and served(fast) == 1
    closed = make_client()
    assert_error(closed.get(f"/models/{seed.model}/versions"), 401, "unauthorized")
    assert served(closed) == 0


def test_head_and_trailing_slash_are_left_to_the_route(pair, seed, reader):
    fast, plain = pair
    for method, path in (("HEAD", f"/models/{seed.model}/versions"), ("GET", f"/models/{seed.model}/versions/")):
        got = fast.request(method, path, headers=reader, follow_redirects=False)
        want = plain.request(method, path, headers=reader, follow_redirects=False)
        assert got.status_code == want.status_code and got.content == want.content
    assert served(fast) == 0


def test_fast_reads_run_inline_only_on_sqlite(monkeypatch, tmp_path):
    from api.settings import ApiSettings

    sqlite = f"sqlite:///{tmp_path / 'r.db'}"
    postgres = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    assert ApiSettings(database_url=sqlite).inline_reads is True
    assert ApiSettings(database_url=postgres).inline_reads is False
    monkeypatch.setenv("SHRINKWRAP_API_INLINE_READS", "false")
    monkeypatch.setenv("SHRINKWRAP_API_FAST_READS", "false")
    settings = ApiSettings.from_env(database_url=sqlite)
    assert settings.inline_reads is False and settings.fast_reads is False


def test_both_ways_of_running_the_read_send_the_same_bytes(make_client, seed, reader):
    """Inline (the SQLite default) and through a worker thread (the PostgreSQL default), on this backend."""
    clients = [make_client(inline_reads=True), make_client(inline_reads=False)]
    path = f"/models/{seed.model}/versions"
    clients[0].get(f"/models/{seed.model}", headers=reader)  # stamp the token
    bodies = [c.get(path, headers=reader).content for c in clients]
    assert bodies[0] == bodies[1] and [served(c) for c in clients] == [1, 1]
