"""Request dependencies: settings, the database (`Db`, with auth), the artifact store, pagination.

Routes reach the database only through `await db.run(fn)`: `fn(session)` runs in one worker thread,
inside one transaction that begins and ends in that thread (`registry.session.session_scope`):
read-only for GET/HEAD/OPTIONS (deferred BEGIN on SQLite, so reads never take the writer lock, then a
rollback), committed otherwise. Whatever needs the session (ORM attributes, lazy relationships) is turned
into response data inside `fn` (`XPublic.model_validate(row)`), so by the time a route returns, its
transaction is over: a 2xx of a mutation always means committed.

`run` also enforces auth (api/auth.py): the scope the method needs, checked in that same hop and, for
reads, in that same transaction, unless a dependency already checked it (`AdminDep`, which mutating
routes declare so that auth comes before body parsing). So no route can reach the database unchecked.

Why one hop: each trip from the event loop to a worker thread and back costs 0.1-0.2 ms of CPU here
(thread wake-ups on both sides), and the old design took four per GET (open the transaction and check
the token, run the route, validate the response, commit). A GET now takes one; with the prebuilt
statements in the registry and uvloop/httptools that cut the server's CPU per 100-row version page
from 6.1 to 2.2 ms (bench/api_load.py). The version list and a version's metrics, the hottest reads, skip
FastAPI's dependency solving altogether when the request is ordinary (api/fastpath.py): 0.5x the CPU.
The schema is checked once per app (and again while it is out of date), so a stale database answers
503 with `shrinkwrap db upgrade` instead of failing deep inside a query.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, TypeVar

import anyio
from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.auth import MAX_TOKEN_CHARS, bearer, check_token
from api.settings import ApiSettings
from registry.repository.tokens import last_used_due, stamp_token_used
from registry.session import check_schema, session_scope
from registry.store import ArtifactStore

T = TypeVar("T")
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


# Cheap dependencies are `async def`: they run on the event loop instead of costing a threadpool hop each.
async def get_settings(request: Request) -> ApiSettings:
    return request.app.state.settings


async def get_engine(request: Request) -> Engine:
    state = request.app.state
    if not state.schema_current:
        await run_in_threadpool(check_schema, state.engine)  # SchemaOutOfDate -> 503 with the fix command
        state.schema_current = True
    return state.engine


@dataclass
class Db:
    """One request's way to the database. Work runs under one of the app's `db_concurrency` slots: the
    bound keeps threads free for other requests when transactions queue on a lock (SQLite has one
    writer) and keeps PostgreSQL within the connection pool."""

    engine: Engine
    slots: anyio.Semaphore
    readonly: bool  # a GET/HEAD/OPTIONS: read-only transactions, scope `read`; otherwise scope `admin`
    token: str | None  # the bearer token sent (None: none sent, "": unusable, e.g. too long)
    open_reads: bool
    authorized: bool = False  # set once the token passed the check for this request

    async def run(self, fn: Callable[[Session], T]) -> T:
        """`fn(session)` in one transaction in one worker thread, after the auth check if still due;
        returns its result once the transaction has ended."""
        async with self.slots:
            return await run_in_threadpool(self._transaction, fn)

    async def authorize(self) -> None:
        """Check the token now, in its own hop (401/403 otherwise)."""
        if not self.authorized:
            async with self.slots:
                await run_in_threadpool(self._authorize_alone)

    def _transaction(self, fn: Callable[[Session], T]) -> T:
        with session_scope(self.engine, readonly=self.readonly) as session:
            if not self.authorized:
                self._check(session, stamp_in_session=not self.readonly)
            return fn(session)

    def _authorize_alone(self) -> None:
        with session_scope(self.engine, readonly=True) as session:
            self._check(session, stamp_in_session=False)

    def _check(self, session: Session, *, stamp_in_session: bool) -> None:
        """Look the token up in `session`, raise 401/403 unless it grants the method's scope, and write
        its `last_used_at` when due (at most once a minute per token: a read-heavy client must not turn
        every GET into a write, on SQLite the one writer lock): into `session` if `stamp_in_session` (a
        write transaction), else in a short write transaction of its own."""
        grant = check_token(session, token=self.token, scope="read" if self.readonly else "admin",
                            open_reads=self.open_reads)
        if grant is not None and last_used_due(grant):
            if stamp_in_session:
                stamp_token_used(session, token_id=grant.id)
            else:
                with session_scope(self.engine) as writer:
                    stamp_token_used(writer, token_id=grant.id)
        self.authorized = True


async def get_db(request: Request, engine: Annotated[Engine, Depends(get_engine)],
                 credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Db:
    token = None
    if credentials is not None:
        token = credentials.credentials.strip()
        token = token if len(token) <= MAX_TOKEN_CHARS else ""
    state = request.app.state
    return Db(engine, state.db_slots, readonly=request.method in READ_METHODS, token=token,
              open_reads=state.settings.open_reads)


DbDep = Annotated[Db, Depends(get_db)]


async def require_admin(db: DbDep) -> None:
    """Mutating routes declare this (`dependencies=[AdminDep]`): the admin check then runs before FastAPI
    parses the body, so an unauthenticated or read-only caller gets 401/403, never a 422."""
    await db.authorize()


AdminDep = Depends(require_admin)


async def get_store(request: Request) -> ArtifactStore:
    return request.app.state.store


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
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
