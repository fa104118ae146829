"""HTTP behaviour independent of the backend (SQLite only): size limits, the offline docs page, the error
shape of framework errors, liveness/readiness and the out-of-date-schema refusal."""

from __future__ import annotations

import re

from api_testing import assert_error
from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import ApiSettings
from registry.session import dispose_engines, init_db


def test_oversized_inputs_rejected(sqlite_client, sqlite_admin):
    c, h = sqlite_client, sqlite_admin
    err = assert_error(c.post("/models", content=b"x" * (2 << 20), headers={**h, "content-type": "application/json"}),
                       413)
    assert "SHRINKWRAP_API_MAX_BODY_BYTES" in err["message"]

    def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(40):
            yield b"x" * 65536

    assert_error(c.post("/models", content=chunks(), headers={**h, "content-type": "application/json"}), 413)
    assert_error(c.post("/models", json={"name": "a" * 201}, headers=h), 422)
    assert_error(c.post("/models", json={"name": "ok", "description": "d" * 10_001}, headers=h), 422)
    assert_error(c.get("/models/" + "a" * 300, headers=h), 422)
    assert_error(c.get("/models", params={"q": "x" * 9000}, headers=h), 414)
    gates = [{"metric": "accuracy", "op": ">=", "value": 0}] * 51
    assert_error(c.put("/models/m/aliases/prod", json={"version": 1, "gates": gates}, headers=h), 422)
    assert c.post("/models", json={"name": "ok", "description": "d" * 10_000}, headers=h).status_code == 201


def test_docs_work_offline(sqlite_client):
    page = sqlite_client.get("/docs")
    assert page.status_code == 200 and "swagger-ui" in page.text
    assert not re.search(r"(src|href)=[\"']?(https?:)?//", page.text), "docs page references an external URL"
    assert "cdn" not in page.text.lower() and not re.search(r"https?://", page.text)
    assert '"validatorUrl": null' in page.text  # no call to validator.swagger.io either
    for asset in re.findall(r"(?:src|href)=\"(/docs/assets/[^\"]+)\"", page.text):
        r = sqlite_client.get(asset)
        assert r.status_code == 200 and len(r.content) > 100, asset
    assert sqlite_client.get("/redoc").status_code == 404  # redoc would need a CDN
    spec = sqlite_client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "/runs" in spec["paths"] and "/models/{name}/versions" in spec["paths"]


def test_health_and_readiness(sqlite_client, prefect):
    assert sqlite_client.get("/health").json() == {"status": "ok"}
    ready = sqlite_client.get("/ready")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["ready"] is True and set(body["checks"]) == {"database", "schema", "prefect"}


def test_out_of_date_schema_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    init_db(url, revision="base")  # an empty database: no tables yet
    try:
        settings = ApiSettings(database_url=url, artifact_root=str(tmp_path / "a"), open_reads=True)
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            err = assert_error(client.get("/models"), 503, "schema_out_of_date")
            assert "shrinkwrap db upgrade" in err["message"]
            ready = client.get("/ready")
            assert ready.status_code == 503 and not ready.json()["ready"]
            assert "shrinkwrap db upgrade" in ready.json()["checks"]["schema"]["detail"]
            assert client.get("/health").status_code == 200
            init_db(url)  # upgraded while the app runs: it serves again without a restart
            assert client.get("/models").status_code == 200
        from api.main import serve

        assert serve(settings=ApiSettings(database_url=f"sqlite:///{tmp_path / 'empty.db'}",
                                          artifact_root=str(tmp_path / "a"))) == 2
    finally:
        dispose_engines()


def test_token_cli_prints_a_working_token_once(sqlite_db, monkeypatch, capsys):
    from registry.repository.tokens import verify_token
    from registry.session import make_engine, session_scope
    from shrinkwrap.cli import main

    monkeypatch.setenv("SHRINKWRAP_DATABASE_URL", sqlite_db)
    assert main(["token", "create", "--scope", "admin", "--name", "ci-bot"]) == 0
    out = capsys.readouterr()
    token = out.out.strip()
    assert token.startswith("sw_") and "\n" not in token and "shown only this once" in out.err
    engine = make_engine(sqlite_db)
    try:
        with session_scope(engine) as s:
            row = verify_token(s, token=token)
            assert row is not None and row.name == "ci-bot" and row.scopes == ["admin"]
    finally:
        engine.dispose()
    assert main(["token", "list"]) == 0
    listed = capsys.readouterr().out
    assert "ci-bot" in listed and token not in listed
