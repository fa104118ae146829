"""Models: CRUD over HTTP on SQLite and PostgreSQL, with the one error shape."""

from __future__ import annotations

from api_testing import assert_error


def test_models_crud(client, admin):
    r = client.post("/models", json={"name": "mnist-mlp", "description": "MLP"}, headers=admin)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["name"] == "mnist-mlp" and created["archived"] is False
    client.post("/models", json={"name": "other"}, headers=admin)

    assert_error(client.post("/models", json={"name": "mnist-mlp"}, headers=admin), 409, "already_exists")
    body = client.get("/models", headers=admin).json()
    assert body["count"] == 2 and [m["name"] for m in body["data"]] == ["mnist-mlp", "other"]
    page = client.get("/models", params={"limit": 1, "offset": 1}, headers=admin).json()
    assert page["count"] == 2 and [m["name"] for m in page["data"]] == ["other"]

    r = client.patch("/models/mnist-mlp", json={"description": "new"}, headers=admin)
    assert r.status_code == 200 and r.json()["description"] == "new"
    assert client.get("/models/mnist-mlp", headers=admin).json()["description"] == "new"

    r = client.post("/models/other/archive", headers=admin)
    assert r.status_code == 200 and r.json()["archived"] is True
    assert [m["name"] for m in client.get("/models", headers=admin).json()["data"]] == ["mnist-mlp"]
    listed = client.get("/models", params={"include_archived": True}, headers=admin).json()
    assert listed["count"] == 2


def test_model_errors(client, admin):
    err = assert_error(client.get("/models/nope", headers=admin), 404, "not_found")
    assert "nope" in err["message"]
    assert_error(client.patch("/models/nope", json={"description": "x"}, headers=admin), 404, "not_found")
    err = assert_error(client.post("/models", json={"name": "../etc"}, headers=admin), 422, "validation_error")
    assert err["details"][0]["loc"] == ["body", "name"]
    assert_error(client.post("/models", json={"name": "ok", "typo": 1}, headers=admin), 422, "validation_error")
    assert_error(client.post("/models", content=b"{not json", headers={**admin, "content-type": "application/json"}),
                 422, "validation_error")
    assert_error(client.get("/models", params={"limit": 0}, headers=admin), 422)
    assert_error(client.get("/models", params={"limit": 100000}, headers=admin), 422)
    assert_error(client.delete("/models/x", headers=admin), 405)
    assert_error(client.get("/no-such-route", headers=admin), 404)
