"""Bearer-token auth with two scopes: `read` (GET routes) and `admin` (everything; implies read).

Tokens are created with `shrinkwrap token create --scope admin` and stored hashed (sha256) by the
registry (`registry.repository.tokens`). Every mutating route depends on `require_admin`; read routes
depend on `require_read`, which lets anonymous requests through only when SHRINKWRAP_API_OPEN_READS is
true. A presented token is always checked, so a wrong or revoked token is a 401 even on open reads.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.deps import SessionDep, SettingsDep
from api.errors import ApiError
from registry.models import ApiToken

SCOPES = ("read", "admin")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}

bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <token>` from `shrinkwrap token create`")


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers=_CHALLENGE)


async def current_token(request: Request, session: SessionDep,
                        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> ApiToken | None:
    """The token row of the request, None when no token was sent; 401 for a wrong or revoked token.
    The lookup itself (`verify_token`) ran when the session opened (api/deps.py `_begin`)."""
    if credentials is None:
        return None
    row = getattr(request.state, "token_row", None)
    if row is None:
        raise _unauthorized("bearer token is invalid or revoked; create one with "
                            "`shrinkwrap token create --scope read` (or --scope admin)")
    return row


TokenDep = Annotated[ApiToken | None, Depends(current_token)]


def has_scope(token: ApiToken, scope: str) -> bool:
    scopes = set(token.scopes or ())
    return scope in scopes or "admin" in scopes


async def require_read(token: TokenDep, settings: SettingsDep) -> ApiToken | None:
    if token is None:
        if settings.open_reads:
            return None
        raise _unauthorized("this route needs a bearer token with scope 'read' (reads are closed: "
                            "SHRINKWRAP_API_OPEN_READS=false); create one with `shrinkwrap token create --scope read`")
    if not has_scope(token, "read"):
        raise ApiError(403, "forbidden", f"token {token.name!r} has scopes {token.scopes}; this route needs 'read'")
    return token


async def require_admin(token: TokenDep) -> ApiToken:
    if token is None:
        raise _unauthorized("this route changes state and needs a bearer token with scope 'admin'; "
                            "create one with `shrinkwrap token create --scope admin`")
    if not has_scope(token, "admin"):
        raise ApiError(403, "forbidden", f"token {token.name!r} has scopes {token.scopes}; "
                                         "this route changes state and needs 'admin'")
    return token


ReadDep = Depends(require_read)
AdminDep = Depends(require_admin)
