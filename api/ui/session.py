"""Browser sessions of the registry UI: the API token in a cookie, CSRF tokens, security headers.

- Login stores the API token itself (the same `read`/`admin` bearer tokens as the REST API, checked by
  `registry.repository.tokens.lookup_token`) in an HttpOnly, SameSite=Strict cookie scoped to /ui: page
  scripts cannot read it and other sites cannot send it. Logout deletes it. No server-side session
  table: revoking the token (`shrinkwrap token revoke`) logs the browser out on its next request.
- Every state-changing form (promote, logout) carries a CSRF token, HMAC-SHA256 of a fixed label keyed
  with the cookie's token: only a page that the cookie's owner loaded can know it, it needs no server
  state (so it works across uvicorn workers), and it changes when the token does (OWASP "HMAC CSRF token").
  All POSTs also refuse a foreign `Origin` header (defence in depth beside SameSite=Strict).
- Database access and the scope check reuse `api.deps.Db`: a page is one worker-thread hop whose
  transaction first checks the cookie's token (401 -> the login page, 403 -> an error page).
- Every UI response carries a strict Content-Security-Policy: scripts, styles and images only from
  this origin (no inline script or style, no CDN), no framing, forms post only here.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import parse_qs, urlsplit

from fastapi import Request, Response

from api.auth import MAX_TOKEN_CHARS
from api.deps import Db
from api.errors import ApiError

COOKIE = "sw_ui_token"
COOKIE_PATH = "/ui"
MAX_FORM_BYTES = 16 * 1024  # a login or promote form is a few hundred bytes
_CSRF_LABEL = b"shrinkwrap-ui-csrf-v1"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY", "Cache-Control": "no-store"}


def cookie_token(request: Request) -> str | None:
    """The token kept by login (None: not logged in; "": unusable, e.g. absurdly long)."""
    token = request.cookies.get(COOKIE)
    if token is None:
        return None
    token = token.strip()
    return token if len(token) <= MAX_TOKEN_CHARS else ""


def page_db(request: Request, *, write: bool = False) -> Db:
    """`api.deps.Db` for a UI request, authenticated by the cookie instead of a bearer header: reads need
    scope `read` (or nothing with SHRINKWRAP_API_OPEN_READS), `write=True` needs `admin`."""
    state = request.app.state
    return Db(state.engine, state.db_slots, readonly=not write, token=cookie_token(request),
              open_reads=state.settings.open_reads)


def csrf_token(token: str | None) -> str:
    """The CSRF token of the session whose cookie holds `token` ("" without one: nothing to protect)."""
    if not token:
        return ""
    return hmac.new(token.encode(), _CSRF_LABEL, hashlib.sha256).hexdigest()


def check_csrf(request: Request, form: dict[str, str]) -> None:
    """403 unless the form's `csrf` field matches the cookie's session."""
    expected = csrf_token(cookie_token(request))
    if not expected or not hmac.compare_digest(expected, form.get("csrf", "")):
        raise ApiError(403, "csrf_failed", "the form's CSRF token is missing or stale; reload the page and "
                                           "submit the form again")


def check_origin(request: Request) -> None:
    """403 when a POST comes from a page of another site: browsers send Origin on every cross-site POST.
    Only the host is compared, so a TLS-terminating proxy in front (https outside, http here) still works.
    `Origin: null` is refused too: our pages set Referrer-Policy same-origin, under which browsers send the
    real origin on same-origin posts (with no-referrer, Chromium sends null)."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    host = request.headers.get("host", "")
    if origin == "null" or urlsplit(origin).netloc != host:
        raise ApiError(403, "bad_origin", f"form posted from origin {origin!r}, expected one on host {host!r}; "
                                          "submit it from the registry UI itself")


async def read_form(request: Request) -> dict[str, str]:
    """The url-encoded form body as {name: first value} (no python-multipart needed for three fields)."""
    check_origin(request)
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise ApiError(413, "content_too_large", f"form body of {len(body)} bytes exceeds {MAX_FORM_BYTES}")
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=20)
    return {k: v[0] for k, v in fields.items()}


def set_login_cookie(response: Response, request: Request, token: str) -> None:
    response.set_cookie(COOKIE, token, path=COOKIE_PATH, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")


def clear_login_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")


def safe_next(target: str | None) -> str:
    """Where to go after login: a path inside /ui on this site only (no open redirect)."""
    if not target:
        return "/ui"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/ui") or target.startswith("//") or "\\" in target:
        return "/ui"
    return target
