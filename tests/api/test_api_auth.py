"""Auth: every mutating route needs an admin token (401 without, 403 with a read token); reads need a
read token unless SHRINKWRAP_API_OPEN_READS; tokens are stored hashed; revoked tokens stop working."""

from __future__ import annotations

from api_testing import assert_error
from sqlalchemy import select

from registry.models import ApiToken
from registry.repository.tokens import hash_token, revoke_token
from registry.session import make_engine, session_scope

MUTATIONS = [
    ("post", "/models", {"name": "m"}),
    ("patch", "/models/mnist-mlp", {"description": "x"}),
    ("post", "/models/mnist-mlp/archive", None),
    ("put", "/models/mnist-mlp/aliases/production", {"version": 1}),
    ("delete", "/models/mnist-mlp/aliases/production", None),
    ("post", "/runs", {}),
    ("post", "/runs/1/cancel", None),
]


def _call(client, method, path, body, headers=None):
    kwargs = {"headers": headers or {}}
    if body is not None:
        kwargs["json"] = body
    return getattr(client, method)(path, **kwargs)


def test_mutations_need_admin(client, reader, admin, seed):
    """Checked in order: no token 401 (with a Bearer challenge), read token 403, and the admin token passes
    auth (whatever the route then answers), with the row left unchanged by the refused calls."""
    for method, path, body in MUTATIONS:
        r = _call(client, method, path, body)
        assert_error(r, 401, "unauthorized")
        assert r.headers["www-authenticate"] == "Bearer"
        assert_error(_call(client, method, path, body, reader), 403, "forbidden")
        assert_error(_call(client, method, path, body, {"Authorization": "Bearer sw_wrong"}), 401)
    assert client.get("/models/mnist-mlp", headers=reader).json()["archived"] is False
    r = client.patch("/models/mnist-mlp", json={"description": "by admin"}, headers=admin)
    assert r.status_code == 200


def test_reads_closed_by_default(client, reader):
    assert_error(client.get("/models"), 401, "unauthorized")
    assert_error(client.get("/runs"), 401)
    assert client.get("/models", headers=reader).status_code == 200
    assert client.get("/health").status_code == 200  # probes stay open


def test_open_reads(make_client, reader):
    client = make_client(open_reads=True)
    assert client.get("/models").status_code == 200
    assert_error(client.post("/models", json={"name": "m"}), 401)
    assert_error(client.get("/models", headers={"Authorization": "Bearer nope"}), 401)  # a bad token is never ignored


def test_malformed_authorization(client):
    for header in ("Bearer", "Basic dXNlcjpwYXNz", "Bearer " + "x" * 5000, "bearer", "Bearer sw_\u00e9"):
        assert_error(client.get("/models", headers={"Authorization": header.encode("utf-8")}), 401)


def test_tokens_are_hashed_and_revocable(client, api_db, reader):
    token = reader["Authorization"].removeprefix("Bearer ")
    engine = make_engine(api_db)
    try:
        with session_scope(engine) as s:
            row = s.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
            assert row is not None and token not in (row.token_hash, row.name)
        assert client.get("/models", headers=reader).status_code == 200
        with session_scope(engine) as s:
            row = s.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
            assert row.last_used_at is not None
            revoke_token(s, token_id=row.id)
    finally:
        engine.dispose()
    assert_error(client.get("/models", headers=reader), 401)


PATH_VALUES = {"name": "mnist-mlp", "version": "1", "alias": "production", "run_id": "1", "artifact_id": "1",
               "file_path": "config.json"}
REQUIRED_QUERY = {"/models/{name}/compare": {"x": "artifact_bytes", "y": "accuracy"}}


def test_every_operation_checks_its_token(client, reader, seed):
    """Walks the OpenAPI document, so a route added later is covered too: every operation except the
    probes declares bearer auth and answers 401 without a token; reads pass with a read token, and every
    mutation is one of MUTATIONS (which checks 401/403 in detail) and answers 403 to a read token."""
    mutations = set()
    for template, operations in client.app.openapi()["paths"].items():
        path = template.format(**{k: v for k, v in PATH_VALUES.items() if "{" + k + "}" in template})
        for method, operation in operations.items():
            if template in ("/health", "/ready"):
                assert "security" not in operation
                continue
            assert operation["security"] == [{"HTTPBearer": []}], (method, template)
            params = REQUIRED_QUERY.get(template, {})
            assert_error(client.request(method, path, params=params), 401, "unauthorized")
            status = client.request(method, path, params=params, headers=reader).status_code
            if method == "get":
                assert status not in (401, 403), (template, status)
            else:
                assert status == 403, (method, template, status)
                mutations.add((method, template))
    assert mutations == {(m, p.replace("mnist-mlp", "{name}").replace("production", "{alias}")
                          .replace("/runs/1/", "/runs/{run_id}/")) for m, p, _ in MUTATIONS}
