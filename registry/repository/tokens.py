"""API bearer tokens. Only the sha256 of a token is stored; the plaintext is shown once at creation."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.orm import Session

from registry.errors import InvalidState
from registry.models import ApiToken, utcnow
from registry.repository._util import get_row, paginate

TOKEN_PREFIX = "sw_"  # noqa: S105 (a public prefix, not a secret)
# `last_used_at` is written at most once per this interval per token: a read-heavy client must not turn
# every GET into a write transaction (on SQLite the one writer lock). It is "last used, to the minute".
LAST_USED_RESOLUTION = timedelta(seconds=60)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, *, name: str, scopes: list[str] | tuple[str, ...]) -> tuple[ApiToken, str]:
    """A new token row and its plaintext (returned once, never stored)."""
    if not name:
        raise InvalidState("token name must be a non-empty string, e.g. 'ci-bot'")
    bad = [s for s in scopes if not isinstance(s, str) or not s]
    if bad:
        raise InvalidState(f"token scopes must be non-empty strings, got {bad!r}")
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(name=name, token_hash=hash_token(plaintext), scopes=sorted(set(scopes)))
    session.add(row)
    session.flush()
    return row, plaintext


def last_used_due(row: ApiToken | TokenGrant) -> bool:
    """Whether `row.last_used_at` is unset or older than `LAST_USED_RESOLUTION` (so worth a write)."""
    return row.last_used_at is None or utcnow() - row.last_used_at >= LAST_USED_RESOLUTION


@dataclass(frozen=True)
class TokenGrant:
    """What a live token grants, read without loading its ORM row (the API checks one per request)."""

    id: int
    name: str
    scopes: tuple[str, ...]
    last_used_at: datetime | None


_tokens = ApiToken.__table__
_LIVE_TOKEN = select(_tokens.c.id, _tokens.c.name, _tokens.c.scopes, _tokens.c.last_used_at).where(
    _tokens.c.token_hash == bindparam("token_hash"), _tokens.c.revoked_at.is_(None))
_STAMP = update(_tokens).where(_tokens.c.id == bindparam("token_id")).values(last_used_at=bindparam("now"))


def lookup_token(session: Session | Connection, *, token: str) -> TokenGrant | None:
    """What the live (not revoked) token `token` grants, read with one prebuilt Core statement (no ORM row;
    `session` may be a bare Connection); None for an unknown or revoked token."""
    if not token:
        return None
    row = session.execute(_LIVE_TOKEN, {"token_hash": hash_token(token)}).first()
    return None if row is None else TokenGrant(row.id, row.name, tuple(row.scopes or ()), row.last_used_at)


def stamp_token_used(session: Session, *, token_id: int) -> None:
    """Set the token's `last_used_at` to now (callers write it only when `last_used_due`)."""
    session.execute(_STAMP, {"token_id": token_id, "now": utcnow()})


def verify_token(session: Session, *, token: str) -> ApiToken | None:
    """The live (not revoked) token row for `token`, with `last_used_at` updated when it is more than
    `LAST_USED_RESOLUTION` old (or unset); None otherwise."""
    grant = lookup_token(session, token=token)
    if grant is None:
        return None
    if last_used_due(grant):
        stamp_token_used(session, token_id=grant.id)
    return session.get(ApiToken, grant.id, populate_existing=True)  # the row as stored, stamp included


def get_token(session: Session, *, token_id: int) -> ApiToken:
    return get_row(session, ApiToken, token_id, f"API token {token_id} not found; list tokens with `shrinkwrap token list`")


def list_tokens(session: Session, *, include_revoked: bool = False, limit: int = 100,
                offset: int = 0) -> tuple[list[ApiToken], int]:
    stmt = select(ApiToken).order_by(ApiToken.id)
    if not include_revoked:
        stmt = stmt.where(ApiToken.revoked_at.is_(None))
    return paginate(session, stmt, limit=limit, offset=offset)


def revoke_token(session: Session, *, token_id: int) -> ApiToken:
    row = get_token(session, token_id=token_id)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()
    return row
