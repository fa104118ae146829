"""Versions, aliases through promotion gates, version metrics and lineage, compare / Pareto front."""

from __future__ import annotations

from api_testing import assert_error


def test_versions_aliases_and_gates(client, admin, seed):
    m = seed.model
    body = client.get(f"/models/{m}/versions", headers=admin).json()
    assert body["count"] == 3 and [v["version"] for v in body["data"]] == [3, 2, 1]
    page = client.get(f"/models/{m}/versions", params={"limit": 1, "offset": 2}, headers=admin).json()
    assert [v["version"] for v in page["data"]] == [1] and page["count"] == 3
    v2 = client.get(f"/models/{m}/versions/2", headers=admin).json()
    assert v2["model_name"] == m and v2["artifact_id"] == seed.artifact_ids["export"] and v2["aliases"] == []
    assert_error(client.get(f"/models/{m}/versions/9", headers=admin), 404, "not_found")
    assert_error(client.get("/models/nope/versions", headers=admin), 404, "not_found")

    # A gate that fails: 409 listing the failure, alias unchanged.
    gates = [{"metric": "accuracy", "op": ">=", "value": 0.98}]
    err = assert_error(client.put(f"/models/{m}/aliases/production", json={"version": 2, "gates": gates},
                                  headers=admin), 409, "gate_failed")
    assert len(err["details"]["failures"]) == 1 and "accuracy" in err["details"]["failures"][0]
    assert_error(client.get(f"/models/{m}/aliases/production", headers=admin), 404)

    gates = [{"metric": "accuracy", "op": ">=", "value": 0.95}]
    r = client.put(f"/models/{m}/aliases/production", json={"version": 2, "gates": gates}, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 2 and r.json()["aliases"] == ["production"]
    assert client.get(f"/models/{m}/aliases/production", headers=admin).json()["version"] == 2
    # Moving it: version 3 has accuracy 0.90; no gates given, so it moves.
    r = client.put(f"/models/{m}/aliases/production", json={"version": 3}, headers=admin)
    assert r.json()["aliases"] == ["production"]
    assert client.get(f"/models/{m}/versions/2", headers=admin).json()["aliases"] == []

    assert_error(client.put(f"/models/{m}/aliases/Prod!", json={"version": 2}, headers=admin), 422)
    assert_error(client.put(f"/models/{m}/aliases/staging", json={"version": 99}, headers=admin), 404)
    bad_gate = {"version": 2, "gates": [{"metric": "accuracy", "op": "~", "value": 1}]}
    assert_error(client.put(f"/models/{m}/aliases/staging", json=bad_gate, headers=admin), 422)

    r = client.delete(f"/models/{m}/aliases/production", headers=admin)
    assert r.status_code == 204 and r.content == b""
    assert_error(client.delete(f"/models/{m}/aliases/production", headers=admin), 404)


def test_version_metrics_lineage_compare(client, admin, seed):
    m = seed.model
    metrics = client.get(f"/models/{m}/versions/2/metrics", headers=admin).json()
    assert metrics["count"] == 1 and metrics["data"][0]["name"] == "accuracy"
    assert metrics["data"][0]["value"] == 0.97

    graph = client.get(f"/models/{m}/versions/2/lineage", headers=admin).json()
    ids = {n["id"] for n in graph["nodes"]}
    a = seed.artifact_ids
    assert ids == {f"version:{m}:2", f"artifact:{a['export']}", f"artifact:{a['student']}",
                   f"artifact:{a['teacher']}"}
    edges = {(e["source"], e["target"]) for e in graph["edges"]}
    assert (f"artifact:{a['teacher']}", f"artifact:{a['student']}") in edges
    assert (f"artifact:{a['export']}", f"version:{m}:2") in edges

    # Versions 1..3 have accuracy .99/.97/.90 and sizes 2100/10244/208 (the directory's files) bytes.
    body = client.get(f"/models/{m}/compare", params={"x": "artifact_bytes", "y": "accuracy"}, headers=admin).json()
    points = {p["version"]: p for p in body["data"]}
    assert set(points) == {1, 2, 3}
    assert points[1]["x"] == 2100 and points[1]["y"] == 0.99
    # Version 2 is bigger and less accurate than 1: dominated. 3 is the smallest, 1 the most accurate.
    assert body["front"] == [3, 1] and points[1]["pareto"] and points[3]["pareto"] and not points[2]["pareto"]
    body = client.get(f"/models/{m}/compare", params={"x": "artifact_bytes", "y": "accuracy", "minimize_x": False},
                      headers=admin).json()
    assert body["front"] == [2, 1]  # the largest file first when larger is "better"
    assert_error(client.get(f"/models/{m}/compare", params={"x": "../x", "y": "accuracy"}, headers=admin), 422)


def test_compare_on_latency_keeps_one_host_context(client, admin, seed, api_db):
    """A latency axis compares only versions measured on one host context, and says who was left out."""
    from registry import repository as repo
    from registry.models import Artifact
    from registry.session import make_engine, session_scope

    m, a, b = seed.model, "a" * 16, "b" * 16
    params = {"x": "latency_p50_ms", "y": "accuracy"}
    engine = make_engine(api_db)
    try:
        with session_scope(engine) as s:
            for number, latency in ((1, 3.0), (2, 1.0), (3, 2.0)):
                v = repo.get_version(s, model_name=m, version=number)
                repo.log_metrics(s, metrics={"latency_p50_ms": latency}, version_id=v.id)
        unknown = client.get(f"/models/{m}/compare", params=params, headers=admin).json()
        assert unknown["host"] is None and "no host context recorded" in unknown["note"]
        with session_scope(engine) as s:
            for number, host in ((1, a), (2, b), (3, a)):
                art = s.get(Artifact, repo.get_version(s, model_name=m, version=number).artifact_id)
                art.meta = {**(art.meta or {}), "measured_on": {"fingerprint": host}}
    finally:
        engine.dispose()
    body = client.get(f"/models/{m}/compare", params=params, headers=admin).json()
    # host a (v3 is the newest): v2's 1.0 ms from host b would otherwise dominate both
    assert body["host"] == a and [p["version"] for p in body["data"]] == [1, 3] and body["excluded"] == [2]
    assert body["front"] == [3, 1] and "1 version left out" in body["note"]
    other = client.get(f"/models/{m}/compare", params={**params, "host": b}, headers=admin).json()
    assert other["front"] == [2] and other["excluded"] == [1, 3]
    sizes = client.get(f"/models/{m}/compare", params={"x": "artifact_bytes", "y": "accuracy"}, headers=admin).json()
    assert sizes["host"] is None and sizes["excluded"] == [] and sizes["note"] is None


def test_version_list_fast_json_matches_the_schema(client, admin, seed, api_db):
    """The version list skips pydantic for speed: its bytes must still validate as VersionsPublic and
    equal what FastAPI's own serialisation of the same rows gives (field order, `Z` datetimes, nulls)."""
    from api.schemas import VersionPublic, VersionsPublic
    from registry import repository as repo
    from registry.session import make_engine, session_scope

    r = client.get(f"/models/{seed.model}/versions", params={"limit": 2, "offset": 1}, headers=admin)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    parsed = VersionsPublic.model_validate_json(r.content)
    engine = make_engine(api_db)
    try:
        with session_scope(engine) as s:
            rows, total = repo.list_version_dicts(s, model_name=seed.model, limit=2, offset=1)
    finally:
        engine.dispose()
    assert r.content == VersionsPublic.model_validate({"data": rows, "count": total}).model_dump_json().encode()
    assert [v.version for v in parsed.data] == [2, 1] and parsed.count == 3
    assert tuple(VersionPublic.model_fields) == repo.VERSION_PAGE_KEYS == tuple(rows[0])  # written in this order
    assert parsed.data[0].created_at.tzinfo is not None and b'Z"' in r.content
