"""`shrinkwrap run | runs | models | show | serve`: the flow and registry commands of the CLI.

`run RECIPE.yaml` validates the recipe before anything starts, brings the default SQLite registry to the
current schema, runs the flow in this process (a temporary Prefect server when PREFECT_API_URL is unset),
then prints the variant table and where the exports are.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a compression recipe (YAML) end to end")
    p.add_argument("recipe", help="recipe file, e.g. recipes/mnist.yaml")
    p.add_argument("--json", action="store_true", help="print the run summary as JSON")
    p.add_argument("--dask-address", metavar="tcp://HOST:8786",
                   help="run the variant fan-out on this Dask scheduler (default: SHRINKWRAP_DASK_ADDRESS)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("server", help="the local Prefect server that `run` starts once and reuses")
    p.add_argument("action", choices=["start", "stop", "status"])
    p.add_argument("--idle", type=float, default=None, help="seconds without runs before it stops "
                   "(default: SHRINKWRAP_PREFECT_IDLE_S or 600)")
    p.set_defaults(func=cmd_server)

    p = sub.add_parser("runs", help="list pipeline runs in the registry")
    p.add_argument("--status", choices=["pending", "running", "completed", "failed", "cancelled", "crashed"])
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("models", help="list registered models with their versions and aliases")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("show", help="show a model version: metrics, lineage, export (MODEL[:VERSION|@ALIAS])")
    p.add_argument("ref", help="mnist-mlp (latest), mnist-mlp:3 or mnist-mlp@production")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("serve", help="serve the compression deployment + schedules.yaml, and the API")
    p.add_argument("--schedules", default=None, help="schedules file (default: schedules.yaml next to recipes/)")
    p.add_argument("--no-api", action="store_true", help="do not start the admin API")
    p.add_argument("--no-ui", action="store_true", help="start the Prefect server without its dashboard")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--pool", default=None, help="register the deployments on this Prefect process work pool "
                   "instead of executing runs here; run them with `prefect worker start --pool NAME`")
    p.set_defaults(func=cmd_serve)


def cmd_run(args) -> int:
    from flows.recipe import Recipe, RecipeError

    try:
        recipe = Recipe.from_yaml(args.recipe)
    except RecipeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from registry.errors import SchemaOutOfDate

    try:
        from registry.session import ensure_schema

        ensure_schema()
    except SchemaOutOfDate as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    summary = _run_flow(recipe, dask_address=getattr(args, "dask_address", None))
    from flows.summary import variant_table
    from registry.config import export_dir

    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return 0
    print()
    print(variant_table(summary))
    print()
    for name, v in summary["variants"].items():
        if v.get("export"):
            print(f"export {name}: {v['export']}")
    promoted = (summary.get("registered") or {}).get("promoted")
    if promoted:
        print(f"{recipe.name}@{promoted['alias']} -> version {promoted['version']} ({promoted['variant']})")
    print(f"exports are under {export_dir()}; registry run {summary['run_id']}: shrinkwrap show {recipe.name}")
    return 0


def _run_flow(recipe, *, dask_address: str | None = None) -> dict[str, Any]:
    """Run the flow in this process, on PREFECT_API_URL or on the local server that later runs reuse."""
    import os

    from flows.local_server import active_run, ensure_local_server

    if not os.environ.get("PREFECT_API_URL"):
        started = time.monotonic()
        os.environ["PREFECT_API_URL"] = ensure_local_server()
        print(f"Prefect server at {os.environ['PREFECT_API_URL']} ({time.monotonic() - started:.1f} s); "
              "`shrinkwrap server stop` stops it", file=sys.stderr)
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.flow import with_task_runner

    with active_run(), temporary_settings(updates={PREFECT_API_URL: os.environ["PREFECT_API_URL"]}):
        return with_task_runner(dask_address=dask_address)(recipe)


def cmd_server(args) -> int:
    from flows.local_server import ensure_local_server, read_state, stop_local_server

    if args.action == "start":
        print(ensure_local_server(idle_s=args.idle))
    elif args.action == "stop":
        print("stopped" if stop_local_server() else "no local Prefect server is running")
    else:
        state = read_state()
        if state is None:
            print("no local Prefect server is running")
            return 1
        print(f"{state['url']} (supervisor pid {state['pid']}, stops after {state['idle_s']:.0f} s without runs)")
    return 0


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True))  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def cmd_runs(args) -> int:
    """List runs, after marking dead ones `crashed` (their process is gone, their Prefect flow run
    crashed or vanished, or their heartbeat is older than SHRINKWRAP_HEARTBEAT_TIMEOUT_S)."""
    import os

    from registry import repository as repo
    from registry.errors import SchemaOutOfDate
    from registry.reconciler import reconcile
    from registry.session import ensure_schema, session_scope

    try:
        ensure_schema()
    except SchemaOutOfDate as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from flows.local_server import read_state

    lookup = None
    url = os.environ.get("PREFECT_API_URL") or (read_state() or {}).get("url")  # the server runs report to
    if url:
        from flows.prefect_states import states_lookup

        lookup = states_lookup(url)
    reconcile(lookup=lookup)
    with session_scope() as s:
        runs, total = repo.list_runs(s, status=args.status, limit=args.limit)
        rows = [[r.id, r.status, (r.recipe or {}).get("name", "?"), r.recipe_hash[:12], r.started_at or "-",
                 r.finished_at or "-", len(r.stages), r.resumed_from_id or "-", (r.error or "")[:60]] for r in runs]
    print(_table(["run", "status", "model", "recipe", "started", "finished", "stages", "resumed", "error"], rows))
    print(f"({len(rows)} of {total})")
    return 0


def cmd_models(args) -> int:
    from registry import repository as repo
    from registry.session import session_scope

    with session_scope() as s:
        models, _ = repo.list_models(s)
        rows = []
        for m in models:
            aliases = repo.list_aliases(s, model_name=m.name)
            _, count = repo.list_versions(s, model_name=m.name, limit=1)
            rows.append([m.name, count, ", ".join(f"{a}->v{v}" for a, v in sorted(aliases.items())) or "-",
                         m.description or ""])
    print(_table(["model", "versions", "aliases", "description"], rows))
    return 0


def parse_ref(ref: str) -> tuple[str, int | None, str | None]:
    """`name`, `name:3` or `name@alias` -> (name, version, alias)."""
    if "@" in ref:
        name, alias = ref.split("@", 1)
        return name, None, alias
    if ":" in ref:
        name, version = ref.rsplit(":", 1)
        if not version.isdigit():
            raise ValueError(f"version in {ref!r} must be a number, e.g. {name}:1 (or {name}@production)")
        return name, int(version), None
    return ref, None, None


def cmd_show(args) -> int:
    from registry import repository as repo
    from registry.errors import NotFound
    from registry.session import session_scope

    try:
        name, version, alias = parse_ref(args.ref)
        with session_scope() as s:
            if alias:
                row = repo.get_version_by_alias(s, model_name=name, alias=alias)
            elif version is not None:
                row = repo.get_version(s, model_name=name, version=version)
            else:
                row = repo.get_latest_version(s, model_name=name)
            art = repo.get_artifact(s, artifact_id=row.artifact_id)
            metrics = repo.latest_values(s, version_id=row.id)
            lineage = repo.version_lineage(s, model_name=name, version=row.version)
            aliases = [a for a, v in repo.list_aliases(s, model_name=name).items() if v == row.version]
            out = {"model": name, "version": row.version, "aliases": aliases, "run_id": row.run_id,
                   "description": row.description, "created_at": str(row.created_at),
                   "artifact": {"id": art.id, "sha256": art.sha256, "bytes": art.bytes, "format": art.format,
                                "uri": art.uri, "export_path": (art.meta or {}).get("path")},
                   "metrics": metrics, "lineage": _lineage_lines(lineage)}
    except (NotFound, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps(out, indent=2, default=str))
    return 0


def _lineage_lines(lineage: dict) -> list[str]:
    nodes = {(n["id"] if isinstance(n, dict) else n.id): n for n in lineage.get("nodes", [])}

    def label(i):
        n = nodes.get(i)
        if n is None:
            return str(i)
        kind = n["kind"] if isinstance(n, dict) else n.kind
        return f"{kind}#{i}"

    lines = []
    for e in lineage.get("edges", []):
        get = (lambda k, e=e: e[k]) if isinstance(e, dict) else (lambda k, e=e: getattr(e, k))
        lines.append(f"{label(get('parent_id'))} -[{get('stage')}]-> {label(get('child_id'))}")
    return lines


def cmd_serve(args) -> int:
    from flows.deploy import serve

    return serve(schedules_path=args.schedules, api=not args.no_api, host=args.host, port=args.port, pool=args.pool,
                 ui=not args.no_ui)
