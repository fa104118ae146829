"""The admin API application: `create_app(settings)` builds it, `serve(host, port)` runs it with uvicorn.

Three layers (mlflow-registry style): ORM rows and repository functions in registry/, database access
in one worker-thread hop per transaction with the auth check (`Db` in api/deps.py), thin routes in
api/routes/<entity>.py. Every error leaves as
`{"error": {"code", "message"}}` (api/errors.py); auth is bearer tokens with scopes (api/auth.py);
the docs page at /docs works offline (api/docs.py); the web UI is at /ui (api/ui/). Settings: api/settings.py.
"""

from __future__ import annotations

import gc
import logging
import sys
from contextlib import asynccontextmanager

import anyio
from fastapi import Depends, FastAPI

from api import docs, errors, fastpath, limits
from api.routes import artifacts, health, models, runs, versions
from api.schemas import ErrorBody
from api.settings import ApiSettings
from api.ui import install_ui
from registry.errors import SchemaOutOfDate
from registry.session import check_schema, make_engine
from registry.store import ArtifactStore

log = logging.getLogger("shrinkwrap.api")
# Documented on every operation, so OpenAPI clients (and schemathesis) know the error shape.
ERROR_RESPONSES = {status: {"model": ErrorBody, "description": what} for status, what in (
    (400, "bad request"), (401, "missing or invalid bearer token"), (403, "token lacks the needed scope"),
    (404, "not found"), (409, "conflict with the current state"), (413, "request body too large"),
    (414, "request URL too long"), (422, "validation error"), (503, "database schema out of date or Prefect down"))}

DESCRIPTION = """Admin API of the Shrinkwrap model registry: models, versions and aliases (with promotion
gates), pipeline runs (trigger and cancel through Prefect), artifacts (download with Range/ETag), lineage
and Pareto comparison. Authenticate with `Authorization: Bearer <token>` (`shrinkwrap token create`)."""


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    settings = settings or ApiSettings.from_env()
    engine = make_engine(settings.database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        try:
            check_schema(engine)
            app.state.schema_current = True
        except SchemaOutOfDate as err:  # keep serving /health and /ready so operators see why
            log.error("%s", err)
        if app.state.schema_current:
            await anyio.to_thread.run_sync(_reconcile, settings)
        yield
        engine.dispose()

    app = FastAPI(title="Shrinkwrap registry API", version="1", description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None, dependencies=[Depends(limits.forbid_unknown_query)],
                  responses=ERROR_RESPONSES)
    app.state.settings = settings
    app.state.engine = engine
    app.state.store = ArtifactStore(settings.artifact_root)
    app.state.schema_current = False
    app.state.db_slots = anyio.Semaphore(settings.db_concurrency)
    app.state.fast_reads_served = 0  # requests answered by api/fastpath.py
    errors.install_error_handlers(app)
    app.add_middleware(fastpath.FastReads)  # inside the body/URL limits (the last added is the outermost)
    app.add_middleware(limits.BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    for module in (health, models, versions, runs, artifacts):
        app.include_router(module.router)
    docs.install_docs(app)
    install_ui(app)  # the web UI at /ui (api/ui/)
    return app


def _reconcile(settings: ApiSettings) -> None:
    """Mark runs whose process or Prefect flow run is gone `crashed` (registry/reconciler.py); a failure
    here is logged and never stops the API from starting."""
    from flows.prefect_states import flow_run_states
    from registry.reconciler import reconcile

    try:
        reconcile(settings.database_url,
                  lookup=lambda ids: flow_run_states(ids, timeout_s=settings.prefect_timeout_s))
    except Exception:  # noqa: BLE001
        log.exception("run reconciliation at start-up failed")


def serve(host: str = "127.0.0.1", port: int = 8000, *, settings: ApiSettings | None = None,
          log_level: str = "info", workers: int = 1) -> int:
    """Run the API with uvicorn; refuses to start (exit 2) when the database schema is out of date.
    With workers > 1 each worker process builds its app from the environment (`ApiSettings.from_env`)."""
    import uvicorn

    settings = settings or ApiSettings.from_env()
    engine = make_engine(settings.database_url)
    try:
        check_schema(engine)
    except SchemaOutOfDate as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    if workers > 1:
        uvicorn.run("api.main:worker_app", factory=True, host=host, port=port, log_level=log_level, workers=workers)
    else:
        uvicorn.run(_frozen(create_app(settings)), host=host, port=port, log_level=log_level)
    return 0


def worker_app() -> FastAPI:
    """The app of one uvicorn worker process (`serve(workers=N)`), settings from the environment."""
    return _frozen(create_app())


def _frozen(app: FastAPI) -> FastAPI:
    """Move everything alive at start-up (modules, the app, SQLAlchemy and pydantic internals: ~100k objects)
    out of the garbage collector's reach (`gc.freeze`), so its periodic full collections scan only what
    requests allocate: a full collection of the start-up heap stalls every request in flight for 40-50 ms
    (measured), which on its own would break the p99 goal of bench/api_load.py."""
    gc.collect()
    gc.freeze()
    return app
