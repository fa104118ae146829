"""The model server application: `create_serving_app(settings)`; `serve_model(settings, host, port)` runs it.

Routes (every error leaves in the admin API's shape, api/errors.py):
- `POST /v1/predict`: classifiers; `{"inputs": [array, ...]}` or `{"inputs": ["text", ...]}` ->
  `{"model", "version", "predictions": [{"label", "label_id", "probabilities"}, ...]}`;
- `POST /v1/completions`, `POST /v1/chat/completions`: causal LMs, OpenAI-compatible (no streaming);
- `GET /health` (alive), `GET /ready` (a version is loaded), `GET /metrics` (Prometheus text);
- `POST /admin/reload`: look the reference up now and swap in a new version if it moved.

Each inference request is validated (422 before queueing), queued (503 + Retry-After when full), batched
(api/serving/batcher.py) and awaited with a timeout (504) while watching for the client to disconnect
(its work is then dropped).
"""

from __future__ import annotations

import asyncio
import gc
import time
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import errors, limits
from api.errors import ApiError
from api.serving.batcher import QueueFull
from api.serving.schemas import (
    ChatRequest,
    CompletionRequest,
    PredictRequest,
    chat_response,
    completion_response,
)
from api.serving.settings import ServeSettings
from api.serving.state import ServerState

AuthHeader = Header(default=None, alias="Authorization", include_in_schema=False)


class RequestMetrics:
    """Pure ASGI middleware: counts every response by route and status and times it."""

    def __init__(self, app: ASGIApp, state: ServerState):
        self.app, self.state = app, state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), [500]

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)
        try:
            await self.app(scope, receive, send_status)
        finally:
            self.state.metrics.observe_request(scope["path"], status[0], time.perf_counter() - start)


async def _disconnected(request: Request) -> None:
    """Returns once the client has gone (the body is already read, so the next message is a disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _loaded(state: ServerState, route: str):
    loaded = state.current
    if loaded is None:
        raise ApiError(503, "not_ready", f"{state.ref} is not loaded yet ({state.load_error or 'loading'}); "
                                         "retry shortly", headers={"Retry-After": "5"})
    if loaded.predictor.route != route:
        other = "/v1/predict" if loaded.predictor.route == "predict" else "/v1/completions or /v1/chat/completions"
        raise ApiError(404, "wrong_route", f"{state.ref} ({type(loaded.predictor).__name__}) is served on {other}")
    return loaded


def _check_model(state: ServerState, model: str | None) -> None:
    if model and model.split("@")[0].split(":")[0] != state.ref.name:
        raise ApiError(404, "model_not_found", f"this server serves {state.ref.name!r}, not {model!r}")


def _submit(state: ServerState, payload: Any, size: int, predictor):
    """Queue one validated request (503 + Retry-After when the queue is full)."""
    try:
        return state.batcher.submit(payload, size=size, predictor=predictor)
    except QueueFull as err:
        raise ApiError(503, "queue_full", str(err), headers={"Retry-After": str(int(err.retry_after_s))}) from None
    except ValueError as err:  # more samples than one batch holds
        raise ApiError(422, "invalid_input", str(err)) from None


async def _wait(state: ServerState, request: Request, job) -> Any:
    """A queued request's result; 504 at its timeout; its work dropped when its client disconnects."""
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({job.future, watcher}, timeout=state.settings.timeout_s,
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if job.future.done() and not job.future.cancelled():
        return job.future.result()
    job.future.cancel()  # the worker skips it, or a running generation stops for it
    if watcher in done:
        raise ApiError(499, "client_closed_request", "the client disconnected; its work was dropped")
    raise ApiError(504, "timeout", f"no result within {state.settings.timeout_s} s (queue depth "
                                   f"{state.batcher.depth}); retry later or raise SHRINKWRAP_SERVE_TIMEOUT_S")


def _add_routes(app: FastAPI, state: ServerState) -> None:
    @app.get("/health", tags=["ops"])
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", tags=["ops"])
    async def ready() -> JSONResponse:
        loaded = state.current
        if loaded is None:
            return errors.error_response(503, "not_ready", f"{state.ref} is not loaded yet "
                                                           f"({state.load_error or 'loading'})")
        return JSONResponse({"status": "ready", "model": loaded.resolved.name, "version": loaded.resolved.version})

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    async def metrics(authorization: str | None = AuthHeader) -> PlainTextResponse:
        await state.authorize(authorization, "read")
        state.metrics.queue_depth = state.batcher.depth
        version = state.current.resolved.version if state.current else None
        return PlainTextResponse(state.metrics.render(model=state.ref.name, version=version),
                                 media_type="text/plain; version=0.0.4")

    @app.post("/admin/reload", tags=["ops"])
    async def reload(authorization: str | None = AuthHeader) -> dict[str, Any]:
        await state.authorize(authorization, "admin")
        changed = await state.reload()
        return {"reloaded": changed, "model": state.ref.name, "version": state.current.resolved.version}

    @app.post("/v1/predict", tags=["inference"])
    async def predict(body: PredictRequest, request: Request, authorization: str | None = AuthHeader):
        with state.batcher.arrival():
            await state.authorize(authorization, "read")
            loaded = _loaded(state, "predict")
            payload, size = loaded.predictor.prepare(body.inputs, state.settings.max_batch)
            job = _submit(state, payload, size, loaded.predictor)
        predictions = await _wait(state, request, job)
        return JSONResponse({"model": loaded.resolved.name, "version": loaded.resolved.version,
                             "predictions": predictions})

    @app.post("/v1/completions", tags=["inference"])
    async def completions(body: CompletionRequest, request: Request, authorization: str | None = AuthHeader):
        with state.batcher.arrival():
            await state.authorize(authorization, "read")
            _check_model(state, body.model)
            loaded = _loaded(state, "completions")
            prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
            payload, size = loaded.predictor.prepare_prompts(prompts, **body.generation())
            job = _submit(state, payload, size, loaded.predictor)
        return JSONResponse(completion_response(loaded.resolved, await _wait(state, request, job)))

    @app.post("/v1/chat/completions", tags=["inference"])
    async def chat(body: ChatRequest, request: Request, authorization: str | None = AuthHeader):
        with state.batcher.arrival():
            await state.authorize(authorization, "read")
            _check_model(state, body.model)
            loaded = _loaded(state, "completions")
            prompt = loaded.predictor.chat_prompt([m.model_dump() for m in body.messages])
            payload, size = loaded.predictor.prepare_prompts([prompt], special_tokens=False, **body.generation())
            job = _submit(state, payload, size, loaded.predictor)
        return JSONResponse(chat_response(loaded.resolved, (await _wait(state, request, job))[0]))


def create_serving_app(settings: ServeSettings) -> FastAPI:
    state = ServerState(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await state.start()
        try:
            yield
        finally:
            await state.stop()

    app = FastAPI(title="Shrinkwrap model server", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description=f"Serves {state.ref} from the Shrinkwrap registry with dynamic batching.")
    app.state.serving = state
    errors.install_error_handlers(app)
    _add_routes(app, state)
    app.add_middleware(limits.BodyLimitMiddleware, max_body_bytes=settings.api.max_body_bytes)
    app.add_middleware(RequestMetrics, state=state)
    return app


def worker_app() -> FastAPI:
    """The app of one uvicorn worker process (--workers > 1): settings from the environment."""
    return create_serving_app(ServeSettings.from_env())


def serve_model(settings: ServeSettings, *, host: str = "127.0.0.1", port: int = 8080, workers: int = 1,
                log_level: str = "info") -> int:
    """Run the server with uvicorn (each worker process loads its own copy of the model)."""
    import os

    import uvicorn

    if workers > 1:
        os.environ.update(settings.to_env())
        uvicorn.run("api.serving.app:worker_app", factory=True, host=host, port=port, workers=workers,
                    log_level=log_level)
        return 0
    app = create_serving_app(settings)
    gc.collect()
    gc.freeze()  # see api/main.py _frozen: keeps full collections of the start-up heap off request latency
    uvicorn.run(app, host=host, port=port, log_level=log_level)
    return 0
