"""Bearer-token auth with two scopes: `read` (GET routes) and `admin` (everything; implies read).

Tokens are created with `shrinkwrap token create --scope admin` and stored hashed (sha256) by the
registry (`registry.repository.tokens`). Which scope a request needs follows from its method: GET/HEAD/
OPTIONS need `read` (or nothing when SHRINKWRAP_API_OPEN_READS is true), everything else needs `admin`.
A presented token is always checked, so a wrong or revoked token is a 401 even on open reads.

Where the check runs (api/deps.py `Db`): a read route checks the token inside the same worker-thread
hop and read-only transaction as its query, so a GET costs one hop. Mutating routes also depend on
`AdminDep`, which checks the token before FastAPI parses their body: an unauthenticated POST is a 401,
never a 422 about its body.
"""

from __future__ import annotations

from fastapi.security import HTTPBearer

from api.errors import ApiError
from registry.repository.tokens import TokenGrant, lookup_token

MAX_TOKEN_CHARS = 256  # real tokens are ~46 chars; anything longer is not worth hashing
_CHALLENGE = {"WWW-Authenticate": "Bearer"}

bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <token>` from `shrinkwrap token create`")


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers=_CHALLENGE)


def has_scope(grant: TokenGrant, scope: str) -> bool:
    return scope in grant.scopes or "admin" in grant.scopes


def check_token(db, *, token: str | None, scope: str, open_reads: bool) -> TokenGrant | None:
    """Look `token` (None: none sent, "": unusable) up through `db` (a Session or Connection) and raise the
    401/403 `ApiError` unless it allows `scope`; returns the grant (None: no token, on open reads)."""
    grant = lookup_token(db, token=token) if token else None
    authorize(grant, token_sent=token is not None, scope=scope, open_reads=open_reads)
    return grant


def authorize(grant: TokenGrant | None, *, token_sent: bool, scope: str, open_reads: bool) -> None:
    """Raise the 401/403 `ApiError` unless `grant` (None: no live token) allows `scope`."""
    if token_sent and grant is None:
        raise _unauthorized("bearer token is invalid or revoked; create one with "
                            "`shrinkwrap token create --scope read` (or --scope admin)")
    if grant is None:
        if scope == "read":
            if open_reads:
                return
            raise _unauthorized("this route needs a bearer token with scope 'read' (reads are closed: "
                                "SHRINKWRAP_API_OPEN_READS=false); create one with "
                                "`shrinkwrap token create --scope read`")
        raise _unauthorized("this route changes state and needs a bearer token with scope 'admin'; "
                            "create one with `shrinkwrap token create --scope admin`")
    if not has_scope(grant, scope):
        needs = "needs 'read'" if scope == "read" else "changes state and needs 'admin'"
        raise ApiError(403, "forbidden", f"token {grant.name!r} has scopes {list(grant.scopes)}; this route {needs}")
