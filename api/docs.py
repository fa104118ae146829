"""The OpenAPI docs page, working offline: Swagger UI assets come from the installed
`swagger-ui-bundle-v2` package (Swagger UI 5, which renders OpenAPI 3.1) and are served by the app
itself under /docs/assets; no CDN is contacted. Without that package a small self-contained page lists
the operations from /openapi.json instead.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs/assets"
_FALLBACK = Path(__file__).resolve().parent / "static" / "docs.html"


def swagger_ui_dir() -> Path | None:
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        return None
    path = Path(str(swagger_ui_path))
    return path if (path / "swagger-ui-bundle.js").is_file() else None


def install_docs(app: FastAPI) -> None:
    """Serve GET /docs (and its assets); the app must be created with docs_url=None, redoc_url=None."""
    assets = swagger_ui_dir()
    openapi_url = app.openapi_url or "/openapi.json"
    if assets is not None:
        app.mount(ASSETS_URL, StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        if assets is None:
            return HTMLResponse(_FALLBACK.read_text().replace("{{OPENAPI_URL}}", openapi_url))
        return get_swagger_ui_html(
            openapi_url=openapi_url, title=f"{app.title} - docs",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js", swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon-32x32.png",
            # validatorUrl None: Swagger UI would otherwise call validator.swagger.io for its badge.
            swagger_ui_parameters={"persistAuthorization": True, "validatorUrl": None})
