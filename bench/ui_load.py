"""Server time of each registry UI page (issue 14 goal: < 300 ms per page with 10k versions).

Seeds a fresh registry the way bench/api_load.py does (bulk inserts: one model with --versions versions),
but with what the UI shows: each version its own export artifact (technique in its metadata, an edge to a
shared checkpoint <- teacher <- dataset lineage, the bytes of one real directory export with a README.md
model card), the metrics accuracy, latency_p50_ms and three more per version, and 50 runs of 8 stages.
Then starts `api.main.serve` (uvicorn subprocess on 127.0.0.1, api_load.start_server), logs in through the
login form and requests each page --iters times after --warmup requests, one at a time.

Server time is the `Server-Timing: app;dur=` header that every UI response carries: from the route's start
(auth check, queries, template render) to the response object, measured inside the server process. Client
latency and the server process's CPU time per request are reported beside it.

    flock /tmp/shrinkwrap-cpu.lock .venv/bin/python bench/ui_load.py                  # SQLite, 10k versions
    .venv/bin/python bench/ui_load.py --db-url postgresql+psycopg://postgres@127.0.0.1:5432/ui_load  # empty DB
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import insert, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from api_load import free_port, server_cpu_seconds, start_server  # noqa: E402

from registry import repository as repo  # noqa: E402
from registry.models import Artifact, ArtifactEdge, Metric, ModelVersion, PipelineRun, StageRun, utcnow  # noqa: E402
from registry.session import init_db, make_engine, session_scope  # noqa: E402
from registry.store import ArtifactStore  # noqa: E402

MODEL = "bench-model"
TECHNIQUES = ("none", "int8", "nf4", "fp4")
STAGES = ("dataset", "teacher", "soft_labels", "distill", "prune", "quantize[nf4]", "evaluate[nf4]", "export[nf4]")


def _lineage_root(s, store: ArtifactStore, tmp: Path) -> tuple[int, str, int]:
    """dataset -> teacher -> checkpoint; returns (checkpoint id, sha256 and size of a card export)."""
    export = tmp / "export"
    export.mkdir(parents=True, exist_ok=True)
    (export / "README.md").write_text("# bench-model\n\n| metric | value |\n|---|---|\n| accuracy | 0.9 |\n")
    (export / "model.safetensors").write_bytes(b"\x00" * 4096)
    dataset = repo.register_blob(s, blob=store.put_bytes(b"data" * 100), kind="dataset", format="npz")
    teacher = repo.register_blob(s, blob=store.put_bytes(b"teacher" * 100), kind="teacher", format="pt",
                                 parents=[dataset])
    checkpoint = repo.register_blob(s, blob=store.put_bytes(b"student" * 100), kind="checkpoint", format="pt",
                                    parents=[teacher])
    blob = store.put(export)
    return checkpoint.id, blob.sha256, blob.bytes


def seed(url: str, root: Path, versions: int) -> tuple[str, int]:
    """The registry described in the module docstring; returns (read token, id of a run)."""
    engine = make_engine(url)
    store = ArtifactStore(root)
    rng = random.Random(0)
    now = utcnow()
    with session_scope(engine) as s:
        model = repo.create_model(s, name=MODEL, description="load test <b>not bold</b>")
        checkpoint, sha, size = _lineage_root(s, store, root.parent)
        first = (s.scalar(select(Artifact.id).order_by(Artifact.id.desc()).limit(1)) or 0) + 1
        s.execute(insert(Artifact), [dict(id=first + i, kind="export", uri=store.uri(sha), sha256=sha, bytes=size
                                          + rng.randrange(1 << 20), format="hf", is_dir=True, created_at=now,
                                          meta={"technique": TECHNIQUES[i % 4]}) for i in range(versions)])
        s.execute(insert(ArtifactEdge), [dict(parent_id=checkpoint, child_id=first + i, stage="export")
                                         for i in range(versions)])
        s.execute(insert(ModelVersion), [dict(model_id=model.id, version=v, status="ready", artifact_id=first + v - 1,
                                              created_at=now) for v in range(1, versions + 1)])
        ids = [vid for (vid,) in s.execute(select(ModelVersion.id).where(ModelVersion.model_id == model.id))]
        s.execute(insert(Metric), [dict(name=name, value=value, version_id=vid, created_at=now) for vid in ids
                                   for name, value in (("accuracy", rng.uniform(0.8, 0.99)),
                                                       ("latency_p50_ms", rng.uniform(0.5, 5)), ("m0", rng.random()),
                                                       ("m1", rng.random()), ("m2", rng.random()))])
        for _ in range(50):
            run = PipelineRun(recipe={"name": MODEL}, recipe_hash="0" * 64, status="completed", created_at=now,
                              started_at=now, finished_at=now, flow_run_id="0b0e6a5c-1111-4222-8333-444455556666")
            s.add(run)
            s.flush()
            s.add_all(StageRun(run_id=run.id, name=n, status="cached" if i % 3 == 0 else "completed",
                               started_at=now, finished_at=now) for i, n in enumerate(STAGES))
        _, token = repo.create_token(s, name="bench", scopes=["read"])
        run_id = run.id
    if engine.dialect.name == "postgresql":  # planner statistics after the bulk load (see api_load.seed)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    engine.dispose()
    return token, run_id


def pages(versions: int, run_id: int) -> dict[str, str]:
    mid = versions // 2
    return {"models list": "/ui",
            "model: newest first, page 1, Pareto of all versions": f"/ui/models/{MODEL}",
            "model: sorted by accuracy, middle page": f"/ui/models/{MODEL}?sort=quality&order=desc&page={versions // 100}",
            "model: sorted by technique, latency vs accuracy plot":
                f"/ui/models/{MODEL}?sort=technique&order=asc&x=latency_p50_ms&y=accuracy",
            "version (metrics, card, files, lineage)": f"/ui/models/{MODEL}/versions/{mid}",
            "runs list": "/ui/runs", "run (stages)": f"/ui/runs/{run_id}"}


def measure(client: httpx.Client, path: str, *, warmup: int, iters: int, pid: int) -> dict:
    for _ in range(warmup):
        client.get(path).raise_for_status()
    server, client_ms = [], []
    cpu0 = server_cpu_seconds(pid)
    for _ in range(iters):
        t = time.perf_counter()
        r = client.get(path)
        client_ms.append((time.perf_counter() - t) * 1000)
        r.raise_for_status()
        server.append(float(re.search(r"app;dur=([\d.]+)", r.headers["server-timing"]).group(1)))
    cpu = (server_cpu_seconds(pid) - cpu0) * 1000 / iters
    return {"p50": statistics.median(server), "max": max(server), "client_p50": statistics.median(client_ms),
            "cpu": cpu, "kib": len(r.content) / 1024}


def screenshot(base: str, token: str, path: Path) -> None:
    """The model page at full scale, in headless Chromium (skipped without playwright or /usr/bin/chromium)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return
    if not Path("/usr/bin/chromium").exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox",
                                    "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                                    "--no-first-run", "--disable-sync"])
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.add_cookies([{"name": "sw_ui_token", "value": token, "domain": "127.0.0.1", "path": "/ui"}])
        page = context.new_page()
        page.goto(f"{base}/ui/models/{MODEL}")
        page.screenshot(path=str(path))
        browser.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db-url", default=None, help="an EMPTY database (default: a temporary SQLite file)")
    parser.add_argument("--versions", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=15)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "ui_load.md"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sw-ui-load-") as tmp:
        url = args.db_url or f"sqlite:///{Path(tmp) / 'registry.db'}"
        init_db(url)
        t = time.perf_counter()
        token, run_id = seed(url, Path(tmp) / "artifacts", args.versions)
        print(f"seeded {args.versions} versions in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        port = free_port()
        proc = start_server(url, Path(tmp) / "artifacts", port, 1)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60, follow_redirects=True) as client:
                client.post("/ui/login", data={"token": token}).raise_for_status()
                results = {name: measure(client, path, warmup=args.warmup, iters=args.iters, pid=proc.pid)
                           for name, path in pages(args.versions, run_id).items()}
            screenshot(f"http://127.0.0.1:{port}", token, ROOT / "bench" / "out" / "ui" / "model-10k.png")
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    backend = url.split(":", 1)[0].split("+")[0]
    lines = ["# UI page server time (bench/ui_load.py)", "",
             f"{args.versions} versions (5 metrics each, own export artifact each), 50 runs x 8 stages; {backend}; "
             f"uvicorn (1 worker) on 127.0.0.1; one request at a time, {args.warmup} warm-up then {args.iters} "
             f"measured per page; read token via the login cookie; {os.cpu_count()} CPUs "
             f"({platform.processor() or platform.machine()}), load average at end {os.getloadavg()[0]:.1f} "
             "(machine shared with other jobs). Server time: the `Server-Timing: app` header (route start to "
             "response: auth, queries, render).", "",
             "| page | server p50 (ms) | server max (ms) | client p50 (ms) | server CPU (ms/request) | HTML (KiB) "
             "| < 300 ms |", "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['p50']:.1f} | {r['max']:.1f} | {r['client_p50']:.1f} | {r['cpu']:.1f} | "
                     f"{r['kib']:.0f} | {'yes' if r['max'] < 300 else 'no'} |")
    table = "\n".join(lines) + "\n"
    print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
