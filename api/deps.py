"""Request dependencies: settings, one database session per request, the artifact store.

`SessionDep` opens one `session_scope` per request with FastAPI's "function" scope: the transaction
commits after the route returns and its response is serialised, but *before* the response is sent, so a
2xx always means committed. The schema is checked once per app (and again while it is out of date), so
a stale database answers 503 with `shrinkwrap db upgrade` instead of failing deep inside a query.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

import anyio
from fastapi import Depends, Query, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.settings import ApiSettings
from registry.repository.tokens import find_token, last_used_due, verify_token
from registry.session import check_schema, session_scope
from registry.store import ArtifactStore


# Cheap dependencies are `async def`: they run on the event loop instead of costing a threadpool hop each.
async def get_settings(request: Request) -> ApiSettings:
    return request.app.state.settings


async def get_engine(request: Request) -> Engine:
    state = request.app.state
    if not state.schema_current:
        await run_in_threadpool(check_schema, state.engine)  # SchemaOutOfDate -> 503 with the fix command
        state.schema_current = True
    return state.engine


async def get_db(request: Request, engine: Annotated[Engine, Depends(get_engine)]) -> AsyncIterator[Session]:
    """One transaction per request, holding one of `db_concurrency` slots from its first query to its commit.

    Why the slots: a request's transaction spans several threadpool hops (auth, route, serialisation). On
    SQLite every transaction takes the write lock up front (registry: BEGIN IMMEDIATE), on PostgreSQL a
    pool connection; if every pool thread were blocked waiting for the lock or a connection, the holder
    could never get a thread to finish and commit (a deadlock until the busy timeout). Admitting fewer
    transactions than threads and than pooled connections rules that out; queued requests wait here,
    on the event loop, without holding a thread."""
    async with request.app.state.db_slots:
        scope, session = await run_in_threadpool(_begin, engine, request)
        try:
            yield session
        except BaseException as exc:  # includes cancellation (client gone): still roll back and close
            with anyio.CancelScope(shield=True):
                await run_in_threadpool(scope.__exit__, type(exc), exc, exc.__traceback__)
            raise
        with anyio.CancelScope(shield=True):  # commit; a cancelled client must not leak the connection
            await run_in_threadpool(scope.__exit__, None, None, None)


MAX_TOKEN_CHARS = 256  # real tokens are ~46 chars; anything longer is not worth hashing
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _begin(engine: Engine, request: Request):
    """Open the transaction and, in the same thread hop, look up the bearer token (api/auth.py reads
    `request.state.token_row`): one hop fewer per request, which matters when the lock is held across it.

    GET/HEAD/OPTIONS (every read route; none writes) run in a read-only transaction (`session_scope(readonly=
    True)`: deferred BEGIN on SQLite, so reads never take the writer lock, then a rollback). The token is
    still looked up on every request (a revoked token is a 401 at once); only when its `last_used_at` stamp
    is due (at most once a minute per token, `LAST_USED_RESOLUTION`) does the request run in a write
    transaction, as every request did before."""
    scope, token_row = None, None
    try:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if not (scheme.lower() == "bearer" and 0 < len(token) <= MAX_TOKEN_CHARS):
            token = None
        if request.method in READ_METHODS:
            read_scope = session_scope(engine, readonly=True)
            session = read_scope.__enter__()
            scope = read_scope
            token_row = find_token(session, token=token) if token else None
            if token_row is None or not last_used_due(token_row):
                request.state.token_row = token_row
                return scope, session
            scope = None
            read_scope.__exit__(None, None, None)  # the stamp is due: this request gets a write transaction
        write_scope = session_scope(engine)
        session = write_scope.__enter__()
        scope = write_scope
        request.state.token_row = verify_token(session, token=token) if token else None
    except BaseException as exc:
        if scope is not None:
            scope.__exit__(type(exc), exc, exc.__traceback__)
        raise
    return scope, session


async def get_store(request: Request) -> ArtifactStore:
    return request.app.state.store


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_db, scope="function")]
StoreDep = Annotated[ArtifactStore, Depends(get_store)]

MAX_PAGE = 1000  # same bound as the registry's pagination


@dataclass(frozen=True)
class Page:
    limit: int
    offset: int


async def get_page(limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="rows per page")] = 100,
                   offset: Annotated[int, Query(ge=0, le=2**31 - 1, description="rows to skip")] = 0) -> Page:
    """`?limit=&offset=` query parameters shared by every list route."""
    return Page(limit, offset)


PageDep = Annotated[Page, Depends(get_page)]
