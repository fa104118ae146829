"""A pure-ASGI fast path for the registry's two hottest reads: a model's version list
(GET /models/{name}/versions, 100 rows a page) and a version's metrics (GET /models/{name}/versions/{v}/metrics).

Through FastAPI a version page cost about 4 ms of server CPU on a 2-core AVX2 machine, of which reading and
writing the rows was about a third; the rest was per-request machinery: dependency solving (settings,
engine, bearer parsing, pagination and path validation, the app-wide unknown-query guard), routing, an ORM
Session per transaction. `FastReads` answers such a request itself when, and only when, everything about it
is ordinary:
  - a GET of exactly one of the paths in `FAST_READS` with a name that matches `NAME_PATTERN`;
  - only the route's own query parameters, each at most once, plain decimals within the route's bounds;
  - the schema already known to be current;
  - a bearer token that grants `read` and needs no last-used stamp, or no token on open reads;
  - a model (and version) that exists, with at least one metric for the metrics route.
It then does the work under the app's `db_slots`, in one read-only transaction on a Core connection
(`registry.session.read_scope`), and writes the JSON with orjson: the same bytes and headers the FastAPI
route sends (tests/api/test_fastpath.py compares them byte for byte). On SQLite the read runs on the event
loop itself (`ApiSettings.inline_reads`): SQLite serialises this process's database work anyway
(`db_concurrency` 1), WAL readers never wait for a writer, and the hop to a worker thread and back was
~40% of the CPU of a fast read (bench/results/api_cpu_ab.md). On PostgreSQL, where a read waits on the
network, it takes the worker-thread hop.

Anything else falls through, untouched, to the FastAPI route: every error, every redirect, HEAD, odd
query strings, a token that is unknown or due a stamp (the route writes `last_used_at`, at most once a
minute per token). So the routes stay the documented operations and the one place where errors are made;
this module only has a faster way to the same 200. A fall-through after the hop repeats the read, which
costs only the rare requests above. `SHRINKWRAP_API_FAST_READS=false` turns the fast path off,
`SHRINKWRAP_API_INLINE_READS` overrides where its reads run.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from api.auth import MAX_TOKEN_CHARS, check_token
from api.deps import MAX_PAGE
from api.errors import ApiError
from api.schemas import NAME_PATTERN
from registry.repository.tokens import last_used_due
from registry.repository.versions import version_metric_rows, version_page
from registry.session import read_scope

_NAME = NAME_PATTERN.removeprefix("^").removesuffix("$")
_INT32 = 2**31 - 1
_JSON_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC  # naive = stored UTC (SQLite), written `Z` as pydantic does
_HEADERS = [(b"content-type", b"application/json")]


@dataclass(frozen=True)
class FastRead:
    """One route's fast path: its path pattern (named groups are its arguments: strings, or ints in 1..2**31-1
    for the groups named in `ints`), its query parameters with their (default, lowest, highest), and
    `read(conn, **arguments)` -> the response content, or None to fall through to the route."""

    path: re.Pattern
    query: dict[str, tuple[int, int, int]]
    read: Callable[..., Any]
    ints: frozenset[str] = frozenset()


def _version_list(conn: Connection, *, name: str, limit: int, offset: int) -> dict | None:
    page = version_page(conn, model_name=name, limit=limit, offset=offset, stored_times=True)
    return None if page is None else {"data": page[0], "count": page[1]}


def _version_metrics(conn: Connection, *, name: str, version: int) -> dict | None:
    rows = version_metric_rows(conn, model_name=name, version=version, stored_times=True)
    return {"data": rows, "count": len(rows)} if rows else None  # none: no such version, or no metrics yet


FAST_READS = (
    FastRead(re.compile(rf"/models/(?P<name>{_NAME})/versions"),
             {"limit": (100, 1, MAX_PAGE), "offset": (0, 0, _INT32)}, _version_list),
    FastRead(re.compile(rf"/models/(?P<name>{_NAME})/versions/(?P<version>[1-9][0-9]{{0,9}})/metrics"), {},
             _version_metrics, ints=frozenset({"version"})),
)


def _query(query_string: bytes, spec: dict[str, tuple[int, int, int]]) -> dict[str, int] | None:
    values = {key: default for key, (default, _, _) in spec.items()}
    if not query_string:
        return values
    seen = set()
    for part in query_string.split(b"&"):
        key, sep, raw = part.partition(b"=")
        name = key.decode("latin-1")
        if not sep or name not in spec or name in seen or not raw.isdigit() or len(raw) > 10:
            return None
        seen.add(name)
        value, (_, low, high) = int(raw), spec[name]
        if not low <= value <= high:
            return None
        values[name] = value
    return values


def _bearer(headers) -> str | None | bool:
    """The bearer token sent (None: no Authorization header); False for anything unusual (let the route judge)."""
    found = None
    for key, value in headers:
        if key == b"authorization":
            if found is not None:
                return False
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            credentials = credentials.strip()
            if scheme.lower() != "bearer" or not credentials or len(credentials) > MAX_TOKEN_CHARS:
                return False
            found = credentials
    return found


class FastReads:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and not scope.get("root_path"):
            body = await self._answer(scope)
            if body is not None:
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-length", str(len(body)).encode()), *_HEADERS]})
                await send({"type": "http.response.body", "body": body})
                scope["app"].state.fast_reads_served += 1  # observable: tests, and whether the path engages
                return
        await self.app(scope, receive, send)

    async def _answer(self, scope: Scope) -> bytes | None:
        state = scope["app"].state
        if not state.schema_current or not state.settings.fast_reads:
            return None
        path = scope["path"]
        for fast in FAST_READS:
            match = fast.path.fullmatch(path)
            if match is not None:
                break
        else:
            return None
        query = _query(scope["query_string"], fast.query)
        token = _bearer(scope["headers"])
        if query is None or token is False:
            return None
        arguments = match.groupdict() | query
        for key in fast.ints:
            arguments[key] = int(arguments[key])
            if arguments[key] > _INT32:
                return None

        def read() -> Any:
            with read_scope(state.engine) as conn:
                try:
                    grant = check_token(conn, token=token, scope="read", open_reads=state.settings.open_reads)
                except ApiError:
                    return None
                if grant is not None and last_used_due(grant):
                    return None  # the route stamps last_used_at in a write transaction
                return fast.read(conn, **arguments)

        async with state.db_slots:
            content = read() if state.settings.inline_reads else await run_in_threadpool(read)
        return None if content is None else orjson.dumps(content, option=_JSON_OPTIONS)
