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
from registry.repository.tokens import verify_token
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
        scope = session_scope(engine)
        session = await run_in_threadpool(_begin, scope, request)
        try:
            yield session
        except BaseException as exc:  # includes cancellation (client gone): still roll back and close
            with anyio.CancelScope(shield=True):
                await run_in_threadpool(scope.__exit__, type(exc), exc, exc.__traceback__)
            raise
        with anyio.CancelScope(shield=True):  # commit; a cancelled client must not leak the connection
            await run_in_threadpool(scope.__exit__, None, None, None)


MAX_TOKEN_CHARS = 256  # real tokens are ~46 chars; anything longer is not worth hashing


def _begin(scope, request: Request) -> Session:
    """Open the transaction and, in the same thread hop, look up the bearer token (api/auth.py reads
    `request.state.token_row`): one hop fewer per request, which matters when the lock is held across it."""
    session = scope.__enter__()
    try:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        request.state.token_row = (verify_token(session, token=token) if scheme.lower() == "bearer"
                                   and 0 < len(token) <= MAX_TOKEN_CHARS else None)
    except BaseException as exc:
        scope.__exit__(type(exc), exc, exc.__traceback__)
        raise
    return session


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
