"""Drive the Prefect dashboard of `shrinkwrap serve` in headless Chromium (Playwright): start the server,
open the custom-run form of a deployment, edit fields, submit, wait for the flow run. Shared by
tests/flows/test_prefect_ui.py and bench/prefect_ui_run.py (a module, not conftest, so both can import it).

Chromium is Debian's (/usr/bin/chromium, `apt-get install chromium`); Playwright cannot download browsers
here. Every request the page makes is recorded in `Browser.requests`, to check that none leaves the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
SHOTS = ROOT / "bench" / "out" / "ui"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Served:
    dashboard: str  # the URL `shrinkwrap serve` printed
    api: str
    log: Path
    proc: subprocess.Popen


def _printed_dashboard(log: Path) -> str | None:
    match = re.search(r"Prefect dashboard at (\S+)", log.read_text(errors="replace")) if log.exists() else None
    return match.group(1) if match else None


@contextlib.contextmanager
def serve_with_dashboard(workdir: Path, schedules: Path, timeout_s: float = 180) -> Iterator[Served]:
    """`shrinkwrap serve --no-api` in a child process that starts its own Prefect server (dashboard on) on a
    free loopback port, with state under `workdir`; yields once the compression deployment is served."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env |= {"PYTHONPATH": str(ROOT), "PREFECT_HOME": str(workdir / "prefect"), "SHRINKWRAP_PREFECT_PORT": str(port)}
    log = workdir / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "shrinkwrap", "serve", "--no-api", "--schedules", str(schedules)],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    api = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + timeout_s
        while not (_printed_dashboard(log) and "deployments are being served" in log.read_text(errors="replace")):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"shrinkwrap serve did not come up (exit {proc.poll()}):\n{log.read_text()[-4000:]}")
            time.sleep(0.5)
        yield Served(dashboard=_printed_dashboard(log), api=api, log=log, proc=proc)
    finally:
        stop_process_group(proc)


def stop_process_group(proc: subprocess.Popen, timeout_s: float = 30) -> None:
    """SIGTERM the child's own process group (serve, its Prefect server, flow-run processes), then SIGKILL."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@dataclass
class Browser:
    page: object
    requests: list[str] = field(default_factory=list)

    def hosts(self) -> set[str]:
        """Hosts of every request (blob:/data: URLs are in-page)."""
        return {urlsplit(u).hostname or "" for u in self.requests if not u.startswith(("blob:", "data:"))}

    def shot(self, name: str, full_page: bool = True) -> Path:
        """Screenshot to bench/out/ui/<name>.png once the page is quiet (the UI polls, so not forever)."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        with contextlib.suppress(PlaywrightTimeout):
            self.page.wait_for_load_state("networkidle", timeout=5_000)
        self.page.wait_for_timeout(300)  # the page fades in
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)
            out = Browser(page=page)
            page.on("request", lambda r: out.requests.append(r.url))
            yield out
        finally:
            browser.close()


def _has_class(name: str) -> str:
    return f"contains(concat(' ', normalize-space(@class), ' '), ' {name} ')"


_PROPERTY = f"div[{_has_class('schema-form-property')}]"


def _labelled(label: str) -> str:
    """A schema-form property whose own label is `label` ("(Optional)", appended to fields with a
    default, is ignored)."""
    return (f"[./div[{_has_class('p-label__header')}]//span[{_has_class('schema-form-property__label')}]"
            f"[normalize-space(.)='{label}' or normalize-space(.)='{label} (Optional)']]")


def form_property(page, *labels: str):
    """A nested schema-form property (label, description, input), found by its labels from the outside in:
    form_property(page, "recipe", "Prune", "P") is the `p` field of the `prune` section. The first match;
    see form_properties."""
    return form_properties(page, *labels).first


def form_properties(page, *labels: str):
    """Every property matching the labels, e.g. the Name of each item of a list of variants. Each label is
    a field of the one before it (its nearest enclosing property), so ("recipe", "Name") is the recipe's
    own name, not the name of its dataset section."""
    xpath = f"//{_PROPERTY}{_labelled(labels[0])}"
    for parent, label in zip(labels, labels[1:], strict=False):
        xpath += f"//{_PROPERTY}{_labelled(label)}[ancestor::{_PROPERTY}[1]{_labelled(parent)}]"
    return page.locator(f"xpath={xpath}")


def form_field(page, *labels: str):
    """The text or number input of a form property (see form_property)."""
    return form_property(page, *labels).locator("input, textarea").first


def dropdown_options(page, *labels: str) -> list[str]:
    """Open an enum property's dropdown from the keyboard and return the options it lists (then close it)."""
    form_property(page, *labels).locator(".p-select-button__control").first.focus()
    page.keyboard.press("Space")
    options = page.get_by_role("option")
    options.first.wait_for()
    texts = [t.strip() for t in options.all_inner_texts()]
    page.keyboard.press("Escape")
    return texts


def dropdown_values(page, *labels: str) -> list[str]:
    """The value each matching enum property's dropdown shows, e.g. the technique of every variant."""
    return [t.strip() for t in form_properties(page, *labels).locator(".p-select-button__value").all_inner_texts()]


def _choice_buttons(page, *labels: str):
    """The buttons that pick a member of a union property (`anyOf`: one per member, e.g. the recipe's
    tasks), its own, not those of the fields below it."""
    return form_property(page, *labels).locator(
        f"xpath=./div[{_has_class('p-label__body')}]/div[{_has_class('p-button-group')}]/button")


def union_choices(page, *labels: str) -> tuple[list[str], list[str]]:
    """The member buttons of a union property and the ones shown as picked (aria-selected)."""
    buttons = _choice_buttons(page, *labels)
    buttons.first.wait_for()
    texts = [t.strip() for t in buttons.all_inner_texts()]
    picked = [t for t, sel in zip(texts, buttons.evaluate_all("bs => bs.map(b => b.ariaSelected)"), strict=True)
              if sel == "true"]
    return texts, picked


def choose(page, *labels: str) -> None:
    """Pick a union member by its button: choose(page, "recipe", "causal_lm") shows the causal_lm form."""
    *path, member = labels
    _choice_buttons(page, *path).filter(has_text=re.compile(rf"^\s*{re.escape(member)}\s*$")).click()


def click_tab(page, name: str) -> None:
    """A tab of a deployment or flow run page (Logs, Artifacts, Description, ...)."""
    page.locator("li.p-tab").filter(has_text=re.compile(rf"^\s*{re.escape(name)}\s*$")).first.click()


def open_custom_run(browser: Browser, dashboard: str, deployment_id: str, parameters: dict) -> None:
    """The custom-run form of a deployment, prefilled with `parameters` (the form's own `?parameters=` link,
    as the UI writes it: JSON encoded twice); the user then edits fields in the form."""
    encoded = quote(quote(json.dumps(parameters, separators=(",", ":")), safe=""), safe="")
    browser.page.goto(f"{dashboard.rstrip('/')}/deployments/deployment/{deployment_id}/run?parameters={encoded}")
    browser.page.get_by_text("Parameters", exact=True).first.wait_for()


def submit_custom_run(browser: Browser) -> str:
    """Press Submit on the custom-run form; returns the id of the flow run the UI created (from the
    UI's own `POST .../create_flow_run` response) once the UI confirms it."""
    page = browser.page
    with page.expect_response(lambda r: r.url.endswith("/create_flow_run") and r.request.method == "POST") as made:
        page.get_by_role("button", name="Submit", exact=True).click()
    response = made.value
    if not response.ok:
        raise AssertionError(f"the UI's create_flow_run was refused: {response.status} {response.text()}")
    flow_run_id = response.json()["id"]
    page.get_by_text("scheduled to start").first.wait_for()  # the "flow run created" toast
    return flow_run_id


def open_flow_run(browser: Browser, dashboard: str, flow_run_id: str, tab: str | None = None) -> None:
    """The flow run's page (what the toast's "View run" opens), then `tab` (Logs, Artifacts, ...) if given."""
    page = browser.page
    page.goto(f"{dashboard.rstrip('/')}/runs/flow-run/{flow_run_id}")
    page.locator("li.p-tab").first.wait_for()
    if tab:
        click_tab(page, tab)


def wait_flow_run(flow_run_id: str, timeout_s: float = 600):
    """Poll the Prefect API until the flow run is in a terminal state (or raise TimeoutError)."""
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(flow_run_id)
            if run.state and run.state.type.value in TERMINAL:
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"flow run {flow_run_id} still {run.state_name} after {timeout_s:.0f} s")
            time.sleep(1)
