"""`shrinkwrap api` (serve the admin API with uvicorn) and `shrinkwrap token create|list|revoke`."""

from __future__ import annotations

import argparse
import sys

SCOPES = ("read", "admin")


def add_commands(sub: argparse._SubParsersAction) -> None:
    api = sub.add_parser("api", help="serve the admin REST API (FastAPI + uvicorn)",
                         description="Serve the admin API. Settings come from SHRINKWRAP_* variables "
                                     "(see api/settings.py); docs at http://HOST:PORT/docs.")
    api.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: loopback only)")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (default 1)")
    api.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    api.set_defaults(func=_serve)

    token = sub.add_parser("token", help="manage API bearer tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    create = token_sub.add_parser("create", help="create a token and print it once")
    create.add_argument("--scope", action="append", choices=SCOPES, required=True,
                        help="read or admin (admin implies read); repeat for several")
    create.add_argument("--name", default=None, help="a label for the token (default: the scopes)")
    create.set_defaults(func=_create_token)
    listing = token_sub.add_parser("list", help="list live tokens (never their values)")
    listing.add_argument("--all", action="store_true", help="include revoked tokens")
    listing.set_defaults(func=_list_tokens)
    revoke = token_sub.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("token_id", type=int)
    revoke.set_defaults(func=_revoke_token)


def _serve(args: argparse.Namespace) -> int:
    from api.main import serve
    from registry.errors import SchemaOutOfDate
    from registry.session import ensure_schema

    if not 0 < args.port < 65536:
        print(f"error: --port must be in 1..65535, got {args.port}", file=sys.stderr)
        return 2
    if args.workers < 1:
        print(f"error: --workers must be >= 1, got {args.workers}", file=sys.stderr)
        return 2
    try:
        ensure_schema()  # a fresh embedded SQLite registry gets its schema, like `shrinkwrap run`
    except SchemaOutOfDate as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return serve(args.host, args.port, log_level=args.log_level, workers=args.workers)


def _create_token(args: argparse.Namespace) -> int:
    from registry.repository.tokens import create_token
    from registry.session import session_scope

    scopes = sorted(set(args.scope))
    with session_scope() as session:
        row, plaintext = create_token(session, name=args.name or "+".join(scopes), scopes=scopes)
        token_id = row.id
    print(f"created token {token_id} ({args.name or '+'.join(scopes)}, scopes {','.join(scopes)}); "
          "it is shown only this once:", file=sys.stderr)
    print(plaintext)
    return 0


def _list_tokens(args: argparse.Namespace) -> int:
    from registry.repository.tokens import list_tokens
    from registry.session import session_scope

    with session_scope() as session:
        rows, _ = list_tokens(session, include_revoked=args.all, limit=1000)
        for row in rows:
            state = f"revoked {row.revoked_at:%Y-%m-%d}" if row.revoked_at else "live"
            used = f"{row.last_used_at:%Y-%m-%d %H:%M}" if row.last_used_at else "never"
            print(f"{row.id}\t{row.name}\t{','.join(row.scopes)}\t{state}\tlast used {used}")
    return 0


def _revoke_token(args: argparse.Namespace) -> int:
    from registry.repository.tokens import revoke_token
    from registry.session import session_scope

    with session_scope() as session:
        row = revoke_token(session, token_id=args.token_id)
        print(f"revoked token {row.id} ({row.name})")
    return 0
