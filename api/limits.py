"""Request guards. `BodyLimitMiddleware` (pure ASGI): a body over `max_body_bytes` gets 413 before any route
reads it, whether the client declared a Content-Length or streams chunks; over-long URLs get 414.
`forbid_unknown_query`: undeclared query parameters get 422."""

from __future__ import annotations

import json

from fastapi import Request
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import ApiError, error_body

MAX_URL_CHARS = 8192  # path + query; ids, names and filters fit in a few hundred


class _TooLarge(HTTPException):
    """An HTTPException so that FastAPI's body parser re-raises it (it turns other errors into 400)."""

    def __init__(self, message: str):
        super().__init__(413, message)


async def _send_error(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps(error_body(code, message)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int):
        self.app, self.max_body_bytes = app, max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"") > MAX_URL_CHARS:
            await _send_error(send, 414, "uri_too_long", f"request URL is longer than {MAX_URL_CHARS} bytes")
            return
        limit = self.max_body_bytes
        too_large = (f"request body is larger than {limit} bytes (SHRINKWRAP_API_MAX_BODY_BYTES); "
                     "send a smaller body")
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _send_error(send, 400, "bad_request", "Content-Length is not an integer")
                    return
                if declared > limit:
                    await _send_error(send, 413, "content_too_large", too_large)
                    return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge(too_large)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _send_error(send, 413, "content_too_large", too_large)


def _declared_query_names(route) -> frozenset[str]:
    names, stack = set(), [route.dependant]
    while stack:  # the route's own query parameters and those of its dependencies (e.g. limit/offset)
        dependant = stack.pop()
        names.update(p.alias for p in dependant.query_params)
        stack.extend(dependant.dependencies)
    return frozenset(names)


_QUERY_NAMES: dict[int, frozenset[str]] = {}


async def forbid_unknown_query(request: Request) -> None:
    """App-wide dependency: a query parameter the route does not declare is a 422, like an unknown body key
    (`?stauts=failed` must not silently list every run)."""
    route = request.scope.get("route")
    if route is None or not request.query_params:
        return
    allowed = _QUERY_NAMES.get(id(route))
    if allowed is None:
        allowed = _QUERY_NAMES[id(route)] = _declared_query_names(route)
    unknown = sorted(set(request.query_params.keys()) - allowed)
    if unknown:
        shown = ", ".join(repr(k[:50]) for k in unknown[:5])
        raise ApiError(422, "validation_error", f"unknown query parameter(s) {shown}; this route accepts "
                                                f"{sorted(allowed) or 'none'}")
