"""Liveness (`/health`: the process answers) and readiness (`/ready`: database reachable, schema at the
migration head, Prefect API reachable). Both are open (no token): they are what probes call."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api import prefect_runs
from api.schemas import Check, HealthPublic, ReadinessPublic
from registry.errors import SchemaOutOfDate
from registry.session import check_schema

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthPublic, summary="Liveness: the process answers")
async def health():
    return HealthPublic(status="ok")


@router.get("/ready", response_model=ReadinessPublic, summary="Readiness: database, schema and Prefect",
            responses={503: {"model": ReadinessPublic, "description": "not ready; each failed check says why"}})
def ready(request: Request):
    state = request.app.state
    checks: dict[str, Check] = {}
    try:
        with state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = Check(ok=True, detail=f"{state.engine.dialect.name} database reachable")
    except Exception as err:  # noqa: BLE001 - a probe reports
        checks["database"] = Check(ok=False, detail=f"database unreachable ({type(err).__name__}); check "
                                                    "SHRINKWRAP_DATABASE_URL and that the server runs")
    if checks["database"].ok:
        try:
            check_schema(state.engine)
            state.schema_current = True
            checks["schema"] = Check(ok=True, detail="schema at the migration head")
        except SchemaOutOfDate as err:
            state.schema_current = False
            checks["schema"] = Check(ok=False, detail=str(err))
    else:
        checks["schema"] = Check(ok=False, detail="not checked: database unreachable")
    ok, detail = prefect_runs.prefect_health(state.settings.prefect_timeout_s)
    checks["prefect"] = Check(ok=ok, detail=detail)
    body = ReadinessPublic(ready=all(c.ok for c in checks.values()), checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)
