"""The registry's web UI, served by the admin API at /ui (issue 14): models, versions with a sortable
table and a Pareto scatter, a version's metrics, model card, files and lineage graph, runs with their
stages, and alias promotion for admin tokens.

Server-rendered HTML (Jinja2, autoescaped) with one small vendored script and stylesheet under
/ui/static: no build step, no CDN, a strict Content-Security-Policy (api/ui/session.py). Pages and
forms: api/ui/routes.py; what they show: api/ui/data.py and api/ui/details.py; the SVG drawings:
api/ui/charts.py. `install_ui(app)` is the one hook `api.main.create_app` calls.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "static"


def install_ui(app: FastAPI) -> None:
    from api.ui.routes import router

    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")
