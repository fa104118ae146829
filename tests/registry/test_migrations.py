"""Alembic ships inside the package: one head, models == migrations, and an out-of-date schema is refused
with the command that fixes it. Runs on SQLite and PostgreSQL (the `db_url` fixture)."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from registry.errors import SchemaOutOfDate
from registry.models import Base
from registry.session import (
    alembic_config,
    check_schema,
    dispose_engines,
    get_engine,
    head_revision,
    init_db,
    make_engine,
    session_scope,
)
from shrinkwrap.cli import main as shrinkwrap


def test_exactly_one_head():
    heads = ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()
    assert len(heads) == 1, f"migration branches must be merged, heads: {heads}"


def test_upgrade_matches_models_and_is_idempotent(db_url):
    init_db(db_url)
    init_db(db_url)  # a second upgrade is a no-op
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
        assert diff == [], f"models and migrations differ; write a migration: {diff}"
        assert set(inspect(engine).get_table_names()) >= set(Base.metadata.tables)
        check_schema(engine)
    finally:
        engine.dispose()


def test_out_of_date_schema_is_refused_with_fix(db_url):
    engine = make_engine(db_url)
    try:
        with pytest.raises(SchemaOutOfDate, match="shrinkwrap db upgrade"):
            check_schema(engine)  # empty database
        init_db(db_url)
        with engine.begin() as conn:  # pretend the database is at an older revision
            conn.execute(text("UPDATE alembic_version SET version_num = 'old0'"))
        with pytest.raises(SchemaOutOfDate, match="old0.*shrinkwrap db upgrade") as info:
            check_schema(engine)
        assert info.value.head == head_revision()
        with pytest.raises(SchemaOutOfDate), session_scope(db_url):
            pass
    finally:
        engine.dispose()
        dispose_engines()


def test_downgrade_to_base_and_back(db_url):
    init_db(db_url)
    command.downgrade(alembic_config(db_url), "base")
    engine = make_engine(db_url)
    try:
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()
    init_db(db_url)
    check_schema(get_engine(db_url))
    dispose_engines()


def test_cli_upgrade_current_check(db_url, capsys):
    assert shrinkwrap(["db", "check", "--url", db_url]) == 1
    assert "shrinkwrap db upgrade" in capsys.readouterr().err
    assert shrinkwrap(["db", "upgrade", "--url", db_url]) == 0
    assert shrinkwrap(["db", "current", "--url", db_url]) == 0
    assert f"head:    {head_revision()}" in capsys.readouterr().out
    assert shrinkwrap(["db", "check", "--url", db_url]) == 0


def test_sqlite_pragmas(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    finally:
        engine.dispose()
