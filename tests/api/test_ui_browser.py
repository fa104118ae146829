"""The registry UI in a real browser: headless Debian Chromium driven by Playwright, against a real uvicorn
server on 127.0.0.1 (in a thread) over a real SQLite registry built with the repository functions.

Every page a test opens records the browser's requests; the `page` fixture fails the test if any URL is
not on the loopback server, so "no request leaves the machine" is checked on every page, not just one.
Screenshots land in bench/out/ui/. Skipped only where /usr/bin/chromium is missing (`make test` installs it).
"""

from __future__ import annotations

import html
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import uvicorn
from ui_testing import CARD, alias_target, make_token, seed_ui

from api.main import create_app
from api.settings import ApiSettings
from registry.session import dispose_engines, init_db

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                                                              "(`apt-get install chromium`; `make test` does it)")
SHOTS = Path(__file__).resolve().parents[2] / "bench" / "out" / "ui"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-extensions",
                 "--disable-default-apps", "--no-default-browser-check", "--metrics-recording-only"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ui-browser")
    url = f"sqlite:///{tmp / 'registry.db'}"
    init_db(url)
    seed = seed_ui(url, tmp / "artifacts", tmp)
    app = create_app(ApiSettings(database_url=url, artifact_root=str(tmp / "artifacts")))
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not (srv.started and srv.servers):
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start within 30 s"
        time.sleep(0.05)
    port = srv.servers[0].sockets[0].getsockname()[1]
    yield {"base": f"http://127.0.0.1:{port}", "url": url, "seed": seed,
           "admin": make_token(url, ["admin"]), "read": make_token(url, ["read"])}
    srv.should_exit = True
    thread.join(timeout=10)
    dispose_engines()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    """A fresh browser context (no cookies) whose every request is checked to stay on the loopback server."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    requests: list[str] = []
    context.on("request", lambda r: requests.append(r.url))
    dialogs: list[str] = []
    pg = context.new_page()
    pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    pg.set_default_timeout(10_000)
    pg.requests, pg.dialogs = requests, dialogs
    yield pg
    context.close()
    assert requests, "the page made no request at all"
    outside = [u for u in requests if urlsplit(u).hostname != "127.0.0.1" and not u.startswith(("data:", "about:"))]
    assert not outside, f"requests left the machine: {outside}"
    assert not dialogs, f"a page opened dialogs (script ran?): {dialogs}"


def login(pg, server, scope: str = "admin") -> None:
    pg.goto(server["base"] + "/ui")
    assert "/ui/login" in pg.url  # not logged in: sent to the login form
    pg.wait_for_function("document.activeElement && document.activeElement.id === 'token'")  # autofocus
    pg.keyboard.type(server[scope])  # keyboard only
    assert pg.input_value("#token") == server[scope]
    with pg.expect_navigation():
        pg.keyboard.press("Enter")
    if pg.url != server["base"] + "/ui":
        shot(pg, "login-failed")
        raise AssertionError(f"login did not land on /ui but on {pg.url}: {pg.locator('main').inner_text()}")


def shot(pg, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_login_model_page_pareto_and_table(page, server):
    seed = server["seed"]
    login(page, server)
    assert page.locator("header .who").inner_text().startswith("Signed in as ui-admin")
    cookie = next(c for c in page.context.cookies() if c["name"] == "sw_ui_token")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui"
    assert page.evaluate("document.cookie") == ""  # scripts cannot read the token
    shot(page, "models")
    page.get_by_role("link", name=seed.model, exact=True).click()
    page.wait_for_selector("#pareto")
    assert page.locator("#pareto a.pt").count() == seed.versions  # one point per version
    assert page.locator("#pareto a.pt.front").count() >= 1
    assert page.locator("#versions tbody tr").count() == seed.versions
    shot(page, "model")
    page.get_by_role("link", name="accuracy", exact=True).click()  # sort by the quality column (descending first)
    page.wait_for_url("**sort=quality**")
    cells = [float(t) for t in page.locator("#versions tbody td:nth-child(2)").all_inner_texts()]
    assert cells == sorted(cells, reverse=True), cells
    page.locator("#pareto a.pt.front").first.click()  # points link to their version
    page.wait_for_url("**/versions/*")


def test_axis_select_redraws_plot(page, server):
    login(page, server)
    page.goto(f"{server['base']}/ui/models/{server['seed'].model}")
    page.select_option("#y-axis", "latency_p50_ms")  # ui.js submits on change
    page.wait_for_url("**y=latency_p50_ms**")
    assert page.locator("#pareto a.pt").count() == 1  # only version 4 has a latency
    assert "latency_p50_ms" in page.locator("#pareto").get_attribute("aria-label")


def test_version_page_lineage_card_files(page, server):
    seed = server["seed"]
    login(page, server)
    page.goto(f"{server['base']}/ui/models/{seed.model}/versions/{seed.card_version}")
    nodes = page.locator("#lineage [data-node]")
    assert nodes.count() == seed.lineage_nodes
    titles = " ".join(nodes.all_text_contents())
    for kind in ("dataset", "teacher", "checkpoint", "export", f"version {seed.card_version}"):
        assert kind in titles, titles
    assert page.locator("#lineage path.edge").count() == seed.lineage_nodes - 1
    card = page.locator("#model-card")
    assert card.locator("h1").inner_text() == "Model card of mnist-mlp v4"
    assert "<script>window.__pwned = 3</script>" in card.inner_text()  # shown as text, not run
    assert card.locator("script").count() == 0 and card.locator("a[href^=javascript]").count() == 0
    href = page.get_by_role("link", name="README.md").get_attribute("href")
    response = page.request.get(server["base"] + href)  # the browser's cookie authenticates the download
    assert response.status == 200 and response.text() == CARD
    assert page.evaluate("window.__pwned") is None
    shot(page, "version")


def test_promote_moves_alias(page, server):
    seed = server["seed"]
    login(page, server)
    for version in (2, 3):
        page.goto(f"{server['base']}/ui/models/{seed.model}/versions/{version}")
        page.get_by_label("Alias").fill("staging")
        page.get_by_role("button", name=f"Point alias at v{version}").click()
        page.wait_for_url(f"**/versions/{version}")
        assert "staging" in page.locator("#version-aliases").inner_text()
        assert alias_target(server["url"], seed.model, "staging") == version
    page.goto(f"{server['base']}/ui/models/{seed.model}/versions/2")
    assert "staging" not in page.locator("#version-aliases").inner_text()  # it moved to v3
    page.goto(server["base"] + "/ui")
    assert "staging → v3" in page.locator("table.grid").inner_text()
    shot(page, "models-after-promote")


def test_read_token_cannot_promote(page, server):
    seed = server["seed"]
    login(page, server, scope="read")
    page.goto(f"{server['base']}/ui/models/{seed.model}/versions/1")
    assert page.locator("#promote-form").count() == 0  # no button for a read token
    before = alias_target(server["url"], seed.model, "production")
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")  # its own valid CSRF token
    response = page.request.post(f"{server['base']}/ui/models/{seed.model}/promote",
                                 form={"csrf": csrf, "version": "1", "alias": "production"})
    assert response.status == 403 and "needs 'admin'" in html.unescape(response.text())
    assert alias_target(server["url"], seed.model, "production") == before


def test_script_in_description_is_text(page, server):
    seed = server["seed"]
    login(page, server)
    response = page.goto(f"{server['base']}/ui/models/{seed.model}")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert page.locator("#model-description").inner_text().startswith("<script>window.__pwned = 1;")
    assert page.locator("main script, main img").count() == 0
    assert page.evaluate("window.__pwned") is None and page.title() != "pwned"
    page.goto(server["base"] + "/ui")
    assert "<script>" in page.locator("td.desc").first.inner_text()


def test_runs_page_stages_and_prefect_link(page, server, monkeypatch):
    monkeypatch.setenv("PREFECT_UI_URL", "http://127.0.0.1:4200")
    seed = server["seed"]
    login(page, server, scope="read")
    page.goto(server["base"] + "/ui/runs")
    assert page.locator("#runs tbody tr").count() == 1
    page.get_by_role("link", name=f"run {seed.run_id}", exact=True).click()
    stages = page.locator("#stages tbody tr")
    assert stages.count() == 3
    assert [r.split("\t")[:3] for r in stages.all_inner_texts()] == [
        ["distill", "completed", "no"], ["export", "completed", "no"], ["evaluate[nf4]", "cached", "yes"]]
    link = page.locator("#prefect-link").get_attribute("href")
    assert link == "http://127.0.0.1:4200/runs/flow-run/0b0e6a5c-1111-4222-8333-444455556666"
    shot(page, "run")


def test_keyboard_navigation_and_labels(page, server):
    seed = server["seed"]
    login(page, server)
    for path in ("/ui", f"/ui/models/{seed.model}", f"/ui/models/{seed.model}/versions/{seed.card_version}",
                 "/ui/runs", f"/ui/runs/{seed.run_id}", "/ui/login"):
        page.goto(server["base"] + path)
        unlabelled = page.evaluate("""() => [...document.querySelectorAll(
            'input:not([type=hidden]), select, textarea, button, a[href]:not([aria-hidden=true])')].filter(el => {
              const name = (el.labels && el.labels.length) || el.getAttribute('aria-label')
                || el.getAttribute('aria-labelledby') || el.textContent.trim();
              return !name; }).map(el => el.outerHTML.slice(0, 120))""")
        assert unlabelled == [], (path, unlabelled)
    page.goto(f"{server['base']}/ui/models/{seed.model}")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    reached = set()
    for _ in range(40):  # Tab reaches the nav, the logout button, the axis controls and the front points
        page.keyboard.press("Tab")
        reached.add(page.evaluate("document.activeElement.id || document.activeElement.textContent.trim()"))
    assert {"Models", "Runs", "Log out", "x-axis", "y-axis", "Plot"} <= reached, reached
    page.focus("#y-axis")
    page.keyboard.press("/")  # the shortcut must not fire inside a field
    page.goto(f"{server['base']}/ui/models/{seed.model}/versions/2")
    page.keyboard.press("/")  # ... and jumps to the first field elsewhere
    assert page.evaluate("document.activeElement.id") == "alias"
    page.keyboard.type("kbd")
    page.keyboard.press("Enter")  # submits the promote form
    page.wait_for_url("**/versions/2")
    assert "kbd" in page.locator("#version-aliases").inner_text()


def test_logout_clears_cookie(page, server):
    login(page, server)
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/ui/login")
    assert not [c for c in page.context.cookies() if c["name"] == "sw_ui_token"]
    page.goto(server["base"] + "/ui/runs")
    assert "/ui/login?next=/ui/runs" in page.url
    shot(page, "login")
