"""Alembic environment for the registry. Run via `shrinkwrap db upgrade` or `registry.session.init_db`;
the URL comes from `config.attributes["url"]` (or an open connection in `attributes["connection"]`).
On PostgreSQL an advisory lock serialises concurrent upgrades (several workers starting at once)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from registry.models import Base

MIGRATION_LOCK_ID = 7_310_007  # arbitrary constant shared by every Shrinkwrap process


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True,
                      compare_type=True)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_ID})
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from registry.session import make_engine

    engine = make_engine(context.config.attributes["url"])
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run `shrinkwrap db upgrade`")
run_migrations_online()
