"""One JSON error shape for every failure: `{"error": {"code": str, "message": str, "details"?: ...}}`.

Domain errors of the registry are mapped to HTTP codes in one table (`DOMAIN_STATUS`), request
validation errors become 422 with the failing locations, HTTP errors keep their status, and anything
unexpected becomes a generic 500: the traceback goes to the server log, never to the client.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from registry.errors import (
    AlreadyExists,
    ArtifactCorrupt,
    GateFailed,
    InvalidState,
    NotFound,
    RegistryError,
    SchemaOutOfDate,
)

log = logging.getLogger("shrinkwrap.api")

# Most specific class first: GateFailed is an InvalidState.
DOMAIN_STATUS: list[tuple[type[RegistryError], int, str]] = [
    (NotFound, 404, "not_found"),
    (AlreadyExists, 409, "already_exists"),
    (GateFailed, 409, "gate_failed"),
    (InvalidState, 409, "invalid_state"),
    (SchemaOutOfDate, 503, "schema_out_of_date"),
    (ArtifactCorrupt, 500, "artifact_corrupt"),
]
_MAX_MESSAGE = 2000  # error messages echo user input; keep responses bounded


class ApiError(Exception):
    """An error raised by a route itself (bad Range header, Prefect unreachable, ...)."""

    def __init__(self, status: int, code: str, message: str, *, details: Any = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details, self.headers = details, headers


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message[:_MAX_MESSAGE]}
    if details is not None:
        error["details"] = details
    return {"error": error}


def error_response(status: int, code: str, message: str, *, details: Any = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message, details), status_code=status, headers=headers)


def _code_for_status(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "http_error"


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    for cls, status, code in DOMAIN_STATUS:
        if isinstance(exc, cls):
            details = {"failures": exc.failures} if isinstance(exc, GateFailed) else None
            if status >= 500:
                log.error("%s on %s %s: %s", type(exc).__name__, request.method, request.url.path, exc)
            return error_response(status, code, str(exc), details=details)
    log.exception("unmapped registry error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "internal server error; see the server log")


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError), exc
    return error_response(exc.status, exc.code, exc.message, details=exc.details, headers=exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError), exc
    details = [{"loc": [str(p) for p in err.get("loc", ())], "msg": str(err.get("msg", ""))[:300],
                "type": err.get("type", "")} for err in exc.errors()[:20]]
    first = details[0] if details else {"loc": [], "msg": "invalid request"}
    message = f"invalid request: {'.'.join(first['loc'])}: {first['msg']}"
    return error_response(422, "validation_error", message, details=details)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException), exc
    message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    return error_response(exc.status_code, _code_for_status(exc.status_code), message,
                          headers=getattr(exc, "headers", None))


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "internal server error; see the server log")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RegistryError, _domain_error)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)
