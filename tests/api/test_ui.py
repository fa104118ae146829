"""The registry UI over HTTP (no browser): auth by cookie, CSRF and origin checks on forms, escaping and
CSP, sorting and paging of the versions table, cookie-authenticated downloads; on SQLite and PostgreSQL.
The browser tests are in test_ui_browser.py."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import insert
from ui_testing import HOSTILE, alias_target, make_token, seed_ui

import registry.repository as repo
from api.ui.charts import lineage_svg, pareto_svg
from api.ui.session import CSP, csrf_token, safe_next
from registry.models import Metric, ModelVersion, utcnow
from registry.session import make_engine, session_scope
from registry.store import ArtifactStore


@pytest.fixture
def ui(api_db, tmp_path, make_client):
    seed = seed_ui(api_db, tmp_path / "artifacts", tmp_path)
    return {"seed": seed, "client": make_client(), "url": api_db, "admin": make_token(api_db, ["admin"]),
            "read": make_token(api_db, ["read"])}


def login(client, token: str) -> None:
    r = client.post("/ui/login", data={"token": token, "next": "/ui/runs"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ui/runs", r.text[:300]


def csrf_of(page_html: str) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]+)"', page_html).group(1)


def test_pages_need_a_login_unless_reads_are_open(ui, make_client):
    client = ui["client"]
    r = client.get("/ui/models/mnist-mlp?sort=quality", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ui/login?next=/ui/models/mnist-mlp?sort=quality"
    assert client.post("/ui/login", data={"token": "sw_wrong"}).status_code == 401
    login(client, ui["read"])
    cookie = next(c for c in client.cookies.jar if c.name == "sw_ui_token")
    assert cookie.path == "/ui" and cookie.has_nonstandard_attr("HttpOnly")
    assert client.get("/ui/models/mnist-mlp").status_code == 200
    open_client = make_client(open_reads=True)
    assert open_client.get("/ui/models/mnist-mlp").status_code == 200  # no login needed
    assert open_client.post("/ui/models/mnist-mlp/promote", data={"version": "1", "alias": "x"}).status_code == 403


def test_login_set_cookie_attributes(ui):
    r = ui["client"].post("/ui/login", data={"token": ui["read"]}, follow_redirects=False)
    header = r.headers["set-cookie"]
    assert "HttpOnly" in header and "SameSite=strict" in header and "Path=/ui" in header


def test_promote_needs_admin_csrf_and_same_origin(ui, make_client):
    seed, url = ui["seed"], ui["url"]
    reader = ui["client"]
    login(reader, ui["read"])
    page = reader.get("/ui/models/mnist-mlp/versions/1").text
    assert 'id="promote-form"' not in page
    r = reader.post("/ui/models/mnist-mlp/promote", data={"csrf": csrf_of(page), "version": "1", "alias": "prod"})
    assert r.status_code == 403 and "needs &#39;admin&#39;" in r.text
    admin = make_client()
    login(admin, ui["admin"])
    page = admin.get("/ui/models/mnist-mlp/versions/1").text
    assert 'id="promote-form"' in page
    form = {"csrf": csrf_of(page), "version": "1", "alias": "prod"}
    assert admin.post("/ui/models/mnist-mlp/promote", data={**form, "csrf": "0" * 64}).status_code == 403
    assert admin.post("/ui/models/mnist-mlp/promote", data={**form, "csrf": ""}).status_code == 403
    foreign = admin.post("/ui/models/mnist-mlp/promote", data=form, headers={"Origin": "http://evil.example"})
    assert foreign.status_code == 403
    assert alias_target(url, seed.model, "prod") is None
    r = admin.post("/ui/models/mnist-mlp/promote", data=form, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ui/models/mnist-mlp/versions/1"
    assert alias_target(url, seed.model, "prod") == 1
    r = admin.post("/ui/models/mnist-mlp/promote", data={**form, "version": "2"}, follow_redirects=False)
    assert r.status_code == 303 and alias_target(url, seed.model, "prod") == 2
    bad = admin.post("/ui/models/mnist-mlp/promote", data={**form, "alias": "Bad Alias"})
    assert bad.status_code == 409 and "alias &#39;Bad Alias&#39; is invalid" in bad.text
    assert admin.post("/ui/logout", data={"csrf": "0" * 64}).status_code == 403  # logout is CSRF-protected too


def test_user_strings_are_escaped_and_csp_is_strict(ui):
    client = ui["client"]
    login(client, ui["read"])
    for path in ("/ui", "/ui/models/mnist-mlp", f"/ui/models/mnist-mlp/versions/{ui['seed'].card_version}",
                 "/ui/runs", f"/ui/runs/{ui['seed'].run_id}", "/ui/login", "/ui/models/nope"):
        r = client.get(path)
        assert r.headers["content-security-policy"] == CSP, path
        assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
        scripts = re.findall(r"<script[^>]*>", r.text)
        assert scripts == ['<script src="/ui/static/ui.js" defer>'], (path, scripts)  # no inline script
        assert " style=" not in r.text and "<img" not in r.text, path
        assert HOSTILE not in r.text, path
    model_page = client.get("/ui/models/mnist-mlp").text
    assert "&lt;script&gt;window.__pwned = 1;" in model_page
    card_page = client.get(f"/ui/models/mnist-mlp/versions/{ui['seed'].card_version}").text
    assert "&lt;script&gt;window.__pwned = 3&lt;/script&gt;" in card_page
    assert 'href="javascript' not in card_page


def test_downloads_use_the_cookie(ui):
    client = ui["client"]
    aid = ui["seed"].readme_artifact
    assert client.get(f"/ui/artifacts/{aid}/files/README.md", follow_redirects=False).status_code == 303
    login(client, ui["read"])
    r = client.get(f"/ui/artifacts/{aid}/files/README.md")
    assert r.status_code == 200 and r.text.startswith("# Model card") and r.headers["etag"]
    assert client.get(f"/ui/artifacts/{aid}/files/../etc/passwd").status_code in (400, 404)
    assert client.get(f"/ui/artifacts/{aid}/download").status_code == 200  # the manifest


def _bulk_versions(url: str, root, n: int) -> None:
    """Model `bulk` with versions 1..n: accuracy = (v % 7) / 10 on every version but the last, size constant."""
    engine = make_engine(url)
    with session_scope(engine) as s:
        model = repo.create_model(s, name="bulk")
        art = repo.register_blob(s, blob=ArtifactStore(root).put_bytes(b"w" * 100), kind="export", format="bin")
        s.execute(insert(ModelVersion), [dict(model_id=model.id, version=v, status="ready", artifact_id=art.id,
                                              created_at=utcnow()) for v in range(1, n + 1)])
        ids = dict(s.execute(ModelVersion.__table__.select().with_only_columns(ModelVersion.version, ModelVersion.id)
                             .where(ModelVersion.model_id == model.id)).all())
        s.execute(insert(Metric), [dict(name="accuracy", value=(v % 7) / 10, version_id=ids[v], created_at=utcnow())
                                   for v in range(1, n)])
    engine.dispose()


def test_versions_table_sorts_and_pages(ui, tmp_path):
    _bulk_versions(ui["url"], tmp_path / "artifacts", 120)
    client = ui["client"]
    login(client, ui["read"])
    first = client.get("/ui/models/bulk").text
    assert first.count('class="pt') == 119  # every version with both metrics is a point
    rows = re.findall(r'<th scope="row"><a href="/ui/models/bulk/versions/(\d+)">', first)
    assert rows == [str(v) for v in range(120, 70, -1)]
    last = client.get("/ui/models/bulk?page=3").text
    assert re.findall(r'versions/(\d+)">v', last)[-1] == "1" and "Page 3 of 3" in last
    by_quality = client.get("/ui/models/bulk?sort=quality&order=asc&page=3").text
    versions = [int(v) for v in re.findall(r'<th scope="row"><a href="/ui/models/bulk/versions/(\d+)">', by_quality)]
    assert versions[-1] == 120  # no accuracy: last whatever the direction
    accs = [(v % 7) / 10 for v in versions[:-1]]
    assert accs == sorted(accs) and accs[-1] == 0.6
    assert client.get("/ui/models/bulk?sort=nope").status_code == 422  # unknown values are refused


def test_safe_next_and_csrf_token():
    assert safe_next("/ui/models/a?sort=quality") == "/ui/models/a?sort=quality"
    for bad in ("//evil.example/ui", "https://evil.example/ui", "/api/other", "/ui\\..\\x", None, ""):
        assert safe_next(bad) == "/ui"
    assert csrf_token(None) == "" and len(csrf_token("sw_a")) == 64 and csrf_token("sw_a") != csrf_token("sw_b")


def test_lineage_layout_and_plot_geometry():
    nodes = [{"id": f"artifact:{i}", "type": "artifact", "artifact_id": i, "kind": k, "format": "pt", "bytes": 10}
             for i, k in ((1, "dataset"), (2, "teacher"), (3, "checkpoint"), (4, "checkpoint"))]
    nodes.append({"id": "version:m:1", "type": "version", "version": 1, "model_name": "m", "aliases": ["prod"]})
    edges = [{"source": f"artifact:{a}", "target": f"artifact:{b}", "stage": "s"} for a, b in ((1, 2), (2, 3), (1, 3), (3, 4))]
    edges.append({"source": "artifact:4", "target": "version:m:1", "stage": "register"})
    g = lineage_svg({"nodes": nodes, "edges": edges})
    column = {n["id"]: n["x"] for n in g["nodes"]}
    assert column["artifact:1"] < column["artifact:2"] < column["artifact:3"] < column["artifact:4"] < column["version:m:1"]
    assert len(g["edges"]) == 5 and g["nodes"][-1]["title"] == "version 1 (prod)"
    plot = pareto_svg([(1, 100.0, 0.5), (2, 200.0, 0.9), (3, 300.0, 0.7)], [1, 2], "m")
    assert [d[3] for d in plot["dots"]] == [True, True, False]
    xs = [d[0] for d in plot["dots"]]
    assert xs == sorted(xs) and all(78 < x < 720 - 18 for x in xs)


def test_front_matches_the_registry(ui, tmp_path):
    """The page's front (pareto_select over the values it read) is the registry's pareto_front, on every axis pair."""
    from api.ui import data

    _bulk_versions(ui["url"], tmp_path / "artifacts", 60)
    engine = make_engine(ui["url"])
    with session_scope(engine, readonly=True) as s:
        for model, x, y in (("bulk", "artifact_bytes", "accuracy"), ("mnist-mlp", "artifact_bytes", "accuracy"),
                            ("mnist-mlp", "latency_p50_ms", "accuracy"), ("bulk", "accuracy", "artifact_bytes")):
            page = data.model_page(s, name=model, view=data.ModelView(x=x, y=y))
            registry = [p.version.version for p in repo.pareto_front(
                s, model_name=model, x_metric=x, y_metric=y, minimize_x=page["minimize_x"],
                maximize_y=page["maximize_y"])]
            assert page["front"] == registry, (model, x, y)
    engine.dispose()


def test_latency_column_on_every_sort(ui):
    """Metric columns are read for the shown page only unless they order the rows: same cells either way."""
    client = ui["client"]
    login(client, ui["read"])
    for query in ("", "?sort=latency&order=desc", "?sort=quality&order=asc", "?sort=technique"):
        page = client.get(f"/ui/models/mnist-mlp{query}").text
        row = re.search(r'versions/4">v4</a></th>(.*?)</tr>', page, re.S).group(1)
        assert re.findall(r'<td class="num">([^<]*)</td>', row) == ["0.93", "247", "1.5"], (query, row)
    first = client.get("/ui/models/mnist-mlp?sort=latency&order=desc").text
    assert re.search(r'<th scope="row"><a href="/ui/models/mnist-mlp/versions/(\d+)"', first).group(1) == "4"
