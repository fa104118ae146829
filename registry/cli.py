"""`shrinkwrap db ...`: schema migrations and artifact-store maintenance.

    shrinkwrap db upgrade [--url URL] [--revision head]   apply Alembic migrations (safe to repeat)
    shrinkwrap db current [--url URL]                     print the database and head revisions
    shrinkwrap db check   [--url URL]                     exit 1 if the schema is not at head
    shrinkwrap db fsck    [--url URL] [--root ROOT]       rows without blobs, blobs without rows
    shrinkwrap db gc      [--grace-seconds S] [--dry-run] delete unreferenced blobs and temp files
"""

from __future__ import annotations

import argparse
import sys


def add_commands(subparsers) -> None:
    db = subparsers.add_parser("db", help="registry database: migrations and artifact store maintenance",
                               description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")

    def common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--url", default=None, help="database URL (default: SHRINKWRAP_DATABASE_URL or the "
                                                   "SQLite file under SHRINKWRAP_HOME)")
        return p

    up = common(sub.add_parser("upgrade", help="apply migrations up to head"))
    up.add_argument("--revision", default="head", help="target revision (default: head)")
    up.set_defaults(func=_upgrade)
    common(sub.add_parser("current", help="show the current and head revisions")).set_defaults(func=_current)
    common(sub.add_parser("check", help="exit 1 if the schema is out of date")).set_defaults(func=_check)
    for name, func, text in (("fsck", _fsck, "report rows whose blob is missing and unreferenced blobs"),
                             ("gc", _gc, "delete unreferenced blobs and stale temp files")):
        p = common(sub.add_parser(name, help=text))
        p.add_argument("--root", default=None, help="artifact store root (default: SHRINKWRAP_ARTIFACT_ROOT)")
        if name == "gc":
            p.add_argument("--grace-seconds", type=float, default=None,
                           help="only delete things older than this (default: 3600)")
            p.add_argument("--dry-run", action="store_true", help="list what would be deleted")
        p.set_defaults(func=func)


def _url(args) -> str:
    from registry.config import database_url

    return args.url or database_url()


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _upgrade(args) -> int:
    from registry.session import current_revision, init_db, make_engine

    url = _url(args)
    init_db(url, args.revision)
    engine = make_engine(url)
    try:
        print(f"{_redact(url)}: schema at revision {current_revision(engine)}")
    finally:
        engine.dispose()
    return 0


def _current(args) -> int:
    from registry.session import current_revision, head_revision, make_engine

    engine = make_engine(_url(args))
    try:
        current, head = current_revision(engine), head_revision()
    finally:
        engine.dispose()
    print(f"current: {current or '<empty>'}\nhead:    {head}")
    return 0


def _check(args) -> int:
    from registry.errors import SchemaOutOfDate
    from registry.session import check_schema, make_engine

    engine = make_engine(_url(args))
    try:
        check_schema(engine)
    except SchemaOutOfDate as err:
        print(err, file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    print("schema is up to date")
    return 0


def _store_and_scope(args):
    from registry.config import artifact_root
    from registry.session import session_scope
    from registry.store import ArtifactStore

    return ArtifactStore(args.root or artifact_root()), session_scope(_url(args))


def _fsck(args) -> int:
    from registry.repository import check_store

    store, scope = _store_and_scope(args)
    with scope as session:
        report = check_store(session, store)
    print(f"{len(report['missing'])} artifact row(s) without a blob: {report['missing']}")
    print(f"{len(report['orphans'])} unreferenced blob(s) (removed by `shrinkwrap db gc` after the grace period)")
    return 1 if report["missing"] else 0


def _gc(args) -> int:
    from registry.repository import GC_GRACE_SECONDS, collect_garbage

    store, scope = _store_and_scope(args)
    grace = GC_GRACE_SECONDS if args.grace_seconds is None else args.grace_seconds
    with scope as session:
        removed = collect_garbage(session, store, grace_seconds=grace, dry_run=args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    print(f"{verb} {len(removed['blobs'])} blob(s) and {len(removed['temp_files'])} temp file(s)")
    return 0
