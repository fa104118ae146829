"""Request dependencies: settings, one database session per request, the artifact store.

`SessionDep` opens one `session_scope` per request with FastAPI's "function" scope: the transaction
commits after the route returns and its response is serialised, but *before* the response is sent, so a
2xx always means committed. The schema is checked once per app (and again while it is out of date), so
a stale database answers 503 with `shrinkwrap db upgrade` instead of failing deep inside a query.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Query, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from api.settings import ApiSettings
from registry.session import check_schema, session_scope
from registry.store import ArtifactStore


def get_settings(request: Request) -> ApiSettings:
    return request.app.state.settings


def get_engine(request: Request) -> Engine:
    state = request.app.state
    if not state.schema_current:
        check_schema(state.engine)  # raises SchemaOutOfDate -> 503 with the fix command
        state.schema_current = True
    return state.engine


def get_db(engine: Annotated[Engine, Depends(get_engine)]) -> Iterator[Session]:
    with session_scope(engine) as session:
        yield session


def get_store(request: Request) -> ArtifactStore:
    return request.app.state.store


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_db, scope="function")]
StoreDep = Annotated[ArtifactStore, Depends(get_store)]

MAX_PAGE = 1000  # same bound as the registry's pagination


class Page:
    """`?limit=&offset=` query parameters shared by every list route."""

    def __init__(self, limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="rows per page")] = 100,
                 offset: Annotated[int, Query(ge=0, le=2**31 - 1, description="rows to skip")] = 0):
        self.limit, self.offset = limit, offset


PageDep = Annotated[Page, Depends()]
