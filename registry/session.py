"""Engines, the one transaction scope, and the schema guard.

- `make_engine(url)`: a new engine. SQLite gets WAL (readers never block the writer), foreign keys on,
  a 30 s busy timeout, and `BEGIN IMMEDIATE` transactions: a writer takes the lock up front, so two
  processes never deadlock upgrading a read lock (SQLITE_BUSY that no busy timeout can cure).
  PostgreSQL gets `pool_pre_ping` so a restarted server costs one retry, not an error.
- `get_engine(url)`: a cached engine per URL (per process), checked once with `check_schema`.
- `session_scope(engine_or_url)`: `with session_scope() as s:` commits on success, rolls back on error.
  Repository functions only flush; this is the one place that commits.
- `check_schema(engine)`: raises `SchemaOutOfDate` (with `shrinkwrap db upgrade` in the message) when
  the database is not at the Alembic head; `init_db(url)` runs `alembic upgrade head` programmatically.
- `ensure_schema()`: the one rule every command follows on start: the embedded SQLite default (no
  SHRINKWRAP_DATABASE_URL) gets its schema created on first use; any existing schema that is not at the
  head, and any configured database, is only checked (SchemaOutOfDate with the upgrade hint).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from registry.config import database_url
from registry.errors import SchemaOutOfDate

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000  # long enough for a 100k-row metric batch from another process
_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def make_engine(url: str | None = None, **kwargs) -> Engine:
    """A new engine for `url` (default `registry.config.database_url()`), configured per backend."""
    url = url or database_url()
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **kwargs)
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # let SQLAlchemy's "begin" event below emit BEGIN itself
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across app crashes
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        deferred = conn.get_execution_options().get("shrinkwrap_readonly", False)
        conn.exec_driver_sql("BEGIN" if deferred else "BEGIN IMMEDIATE")


def get_engine(url: str | None = None, *, check: bool = True) -> Engine:
    """The process-wide engine for `url`, created once; refuses an out-of-date schema when `check`."""
    url = url or database_url()
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = make_engine(url)
            if check:
                try:
                    check_schema(engine)
                except SchemaOutOfDate:
                    engine.dispose()
                    raise
            _engines[url] = engine
        return engine


def dispose_engines() -> None:
    """Close every cached engine (tests, forked workers)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def _after_fork() -> None:
    # A forked child must not reuse the parent's pooled connections (SQLAlchemy pooling docs).
    for engine in _engines.values():
        engine.dispose(close=False)
    _engines.clear()


os.register_at_fork(after_in_child=_after_fork)


@contextmanager
def session_scope(engine_or_url: Engine | str | None = None, *, readonly: bool = False) -> Iterator[Session]:
    """One transaction: commit when the block ends normally, roll back (and re-raise) otherwise.

    `readonly=True` (e.g. GET endpoints): on SQLite the transaction starts deferred, so reads never wait
    for a writer (WAL), and it always ends in a rollback; nothing written in it is kept."""
    engine = engine_or_url if isinstance(engine_or_url, Engine) else get_engine(engine_or_url)
    if readonly:
        engine = readonly_engine(engine)
    session = Session(engine, expire_on_commit=False)
    try:
        yield session
        if readonly:
            session.rollback()
        else:
            session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def readonly_engine(engine: Engine) -> Engine:
    """`engine` with the read-only option (deferred BEGIN on SQLite, see make_engine), made once per engine:
    building it per request costs more than a hot read's query."""
    ro = engine.__dict__.get("_shrinkwrap_readonly")
    if ro is None:
        ro = engine.__dict__["_shrinkwrap_readonly"] = engine.execution_options(shrinkwrap_readonly=True)
    return ro


@contextmanager
def read_scope(engine: Engine) -> Iterator[Connection]:
    """One read-only transaction on a Core connection, as `session_scope(engine, readonly=True)` gives one
    on a Session, for hot read paths that run only prebuilt Core statements (no ORM unit of work to set
    up and tear down); it always ends in a rollback."""
    with readonly_engine(engine).connect() as conn:
        yield conn


def alembic_config(url: str | None = None, connection=None):
    """An Alembic Config pointing at the migrations shipped in this package (no alembic.ini needed)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["url"] = url or database_url()
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def check_schema(engine: Engine) -> None:
    """Raise `SchemaOutOfDate` unless the database is exactly at the migration head."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise SchemaOutOfDate(current, head, engine.url.render_as_string(hide_password=True))


def init_db(url: str | None = None, revision: str = "head") -> None:
    """`alembic upgrade <revision>` on `url` (default: the configured database). Safe to repeat."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)
    with _lock:  # a cached engine may have been refused earlier; the schema is new now
        engine = _engines.pop(url or database_url(), None)
    if engine is not None:
        engine.dispose()


def ensure_schema(url: str | None = None) -> None:
    """Create the schema of a fresh embedded SQLite registry; otherwise refuse an out-of-date one.

    Fresh = the default database (SHRINKWRAP_DATABASE_URL unset) with no Alembic revision yet. An older
    schema is never upgraded behind the user's back: SchemaOutOfDate says to run `shrinkwrap db upgrade`."""
    url = url or database_url()
    engine = make_engine(url)
    try:
        embedded = "SHRINKWRAP_DATABASE_URL" not in os.environ and engine.url.get_backend_name() == "sqlite"
        if embedded and current_revision(engine) is None:
            init_db(url)
            return
        check_schema(engine)
    finally:
        engine.dispose()
