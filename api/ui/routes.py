"""Routes of the registry UI under /ui: HTML pages, the login/logout/promote forms, cookie-authenticated
downloads. Each page is one `Db.run` (auth check + queries in one transaction, api/deps.py), then a
Jinja2 render in a worker thread; errors become HTML pages (401 -> the login form) instead of JSON.
Every response says how long the server spent on it (`Server-Timing: app;dur=<ms>`, bench/ui_load.py)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path as FsPath
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.auth import has_scope
from api.deps import Db
from api.errors import DOMAIN_STATUS, ApiError
from api.routes import artifacts as artifact_routes
from api.routes.artifacts import ArtifactIdPath
from api.routes.models import ModelNamePath
from api.routes.runs import RunIdPath
from api.routes.versions import VersionPath
from api.schemas import METRIC_PATTERN
from api.ui import charts, data, details
from api.ui.session import (
    SECURITY_HEADERS,
    check_csrf,
    clear_login_cookie,
    cookie_token,
    csrf_token,
    page_db,
    read_form,
    safe_next,
    set_login_cookie,
)
from registry.errors import RegistryError
from registry.repository import set_alias
from registry.repository.tokens import lookup_token

router = APIRouter(prefix="/ui", include_in_schema=False)
HERE = FsPath(__file__).resolve().parent
TEMPLATES = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                        trim_blocks=True, lstrip_blocks=True, auto_reload=False)
TEMPLATES.filters.update(fmt=charts.fmt, quote=lambda s: quote(str(s), safe="/"))
PER_PAGE = 50
PageNo = Annotated[int, Query(ge=1, le=10**6, description="page number")]
Axis = Annotated[str | None, Query(pattern=METRIC_PATTERN, max_length=200)]


def _viewer(session: Session, token: str | None) -> dict | None:
    grant = lookup_token(session, token=token) if token else None
    if grant is None:
        return None
    return {"name": grant.name, "admin": has_scope(grant, "admin"), "csrf": csrf_token(token)}


def _html(template: str, context: dict, status: int, t0: float) -> HTMLResponse:
    html = TEMPLATES.get_template(template).render(**context)
    headers = {**SECURITY_HEADERS, "Server-Timing": f"app;dur={(time.perf_counter() - t0) * 1000:.1f}"}
    return HTMLResponse(html, status_code=status, headers=headers)


def _error_status(err: Exception) -> tuple[int, str]:
    if isinstance(err, ApiError):
        return err.status, err.message
    for cls, status, _code in DOMAIN_STATUS:
        if isinstance(err, cls):
            return status, str(err)
    return 500, "internal error; see the server log"


async def _error_page(request: Request, err: Exception, t0: float) -> Response:
    status, message = _error_status(err)
    if status == 401:
        target = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""), safe="/?=&")
        return RedirectResponse(f"/ui/login?next={target}", status_code=303, headers=SECURITY_HEADERS)
    return await run_in_threadpool(_html, "error.html", {"status": status, "message": message, "viewer": None}, status, t0)


async def render(request: Request, template: str, fn: Callable[[Session], dict[str, Any]], *,
                 db: Db | None = None) -> Response:
    """`fn(session)` behind the cookie's auth check, rendered into `template` with the viewer's identity."""
    t0 = time.perf_counter()
    db = db or page_db(request)
    try:
        context = await db.run(lambda s: {**fn(s), "viewer": _viewer(s, db.token)})
    except (ApiError, RegistryError) as err:
        return await _error_page(request, err, t0)
    return await run_in_threadpool(_html, template, context, 200, t0)


async def _listing(request: Request, template: str, key: str, lister: Callable, page: int) -> Response:
    """A paginated list page: `lister(session, limit=, offset=)` -> (rows, total) into `template` as `key`."""
    def build(s: Session) -> dict:
        rows, total = lister(s, limit=PER_PAGE, offset=(page - 1) * PER_PAGE)
        return {key: rows, "page": page, "pages": max(1, -(-total // PER_PAGE)), "total": total}

    return await render(request, template, build)


@router.get("", summary="Models")
async def models_page(request: Request, page: PageNo = 1):
    return await _listing(request, "models.html", "models", data.models_overview, page)


@router.get("/models/{name}")
async def model_page(request: Request, name: ModelNamePath, page: PageNo = 1,
                     sort: Literal[data.SORT_KEYS] = "version",  # type: ignore[valid-type]
                     order: Literal["asc", "desc"] = "desc", x: Axis = None, y: Axis = None):
    view = data.ModelView(sort=sort, descending=order == "desc", page=page, per_page=PER_PAGE, x=x, y=y)

    def build(s: Session) -> dict:
        ctx = data.model_page(s, name=name, view=view)
        plot = ctx["plot"] = charts.pareto_svg(ctx.pop("points"), ctx["front"], name)
        plot["markup"] = charts.dots_markup(plot["dots"], plot.get("href", ""), ctx["x"], ctx["y"])
        return ctx

    return await render(request, "model.html", build)


@router.get("/models/{name}/versions/{version}")
async def version_page(request: Request, name: ModelNamePath, version: VersionPath):
    store = request.app.state.store

    def build(s: Session) -> dict:
        ctx = details.version_page(s, store, name=name, version=version)
        ctx["lineage"] = charts.lineage_svg(ctx.pop("graph"))
        return ctx

    return await render(request, "version.html", build)


@router.post("/models/{name}/promote")
async def promote(request: Request, name: ModelNamePath):
    """Point an alias at a version (admin token, CSRF token), then back to the version page."""
    t0 = time.perf_counter()
    try:
        form = await read_form(request)
        check_csrf(request, form)
        version, alias = int(form.get("version", "0") or 0), form.get("alias", "").strip()
        await page_db(request, write=True).run(lambda s: set_alias(s, model_name=name, version=version, alias=alias))
    except (ApiError, RegistryError) as err:
        return await _error_page(request, err, t0)
    except ValueError:
        return await _error_page(request, ApiError(400, "bad_form", "version must be a number"), t0)
    return RedirectResponse(f"/ui/models/{quote(name)}/versions/{version}", status_code=303, headers=SECURITY_HEADERS)


@router.get("/runs")
async def runs_page(request: Request, page: PageNo = 1):
    return await _listing(request, "runs.html", "runs", details.runs_page, page)


@router.get("/runs/{run_id}")
async def run_page(request: Request, run_id: RunIdPath):
    return await render(request, "run.html", lambda s: {"run": details.run_page(s, run_id=run_id)})


async def _or_error_page(request: Request, call: Callable[[], Awaitable[Response]]) -> Response:
    try:
        return await call()
    except (ApiError, RegistryError) as err:
        return await _error_page(request, err, time.perf_counter())


@router.get("/artifacts/{artifact_id}/download")
async def download(request: Request, artifact_id: ArtifactIdPath):
    """The REST routes' downloads (ETag, Range, manifest lookup), authenticated by the UI cookie."""
    store = request.app.state.store
    return await _or_error_page(request, lambda: artifact_routes.download_artifact(
        request, page_db(request), store, artifact_id))


@router.get("/artifacts/{artifact_id}/files/{file_path:path}")
async def download_file(request: Request, artifact_id: ArtifactIdPath,
                        file_path: Annotated[str, Path(max_length=artifact_routes.MAX_FILE_PATH)]):
    store = request.app.state.store
    return await _or_error_page(request, lambda: artifact_routes.download_file(
        request, page_db(request), store, artifact_id, file_path))


@router.get("/login")
async def login_form(request: Request, next: Annotated[str | None, Query(max_length=2000)] = None):  # noqa: A002
    return _html("login.html", {"next": safe_next(next), "viewer": None, "error": None}, 200, time.perf_counter())


@router.post("/login")
async def login(request: Request):
    """Check the token (scope read or admin), keep it in the HttpOnly cookie, go where the user was headed."""
    t0 = time.perf_counter()
    try:
        form = await read_form(request)
    except ApiError as err:
        return await _error_page(request, err, t0)
    token, target = form.get("token", "").strip(), safe_next(form.get("next"))
    state = request.app.state
    db = Db(state.engine, state.db_slots, readonly=True, token=token or "", open_reads=False)
    try:
        await db.run(lambda s: None)  # 401 for an unknown/revoked token, 403 for one without read scope
    except ApiError as err:
        return _html("login.html", {"next": target, "viewer": None, "error": err.message}, err.status, t0)
    response = RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)
    set_login_cookie(response, request, token)
    return response


@router.post("/logout")
async def logout(request: Request):
    t0 = time.perf_counter()
    try:
        form = await read_form(request)
        if cookie_token(request):
            check_csrf(request, form)
    except ApiError as err:
        return await _error_page(request, err, t0)
    response = RedirectResponse("/ui/login", status_code=303, headers=SECURITY_HEADERS)
    clear_login_cookie(response, request)
    return response
