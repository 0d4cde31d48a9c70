"""The browser's sign-in: the refresh token in an HttpOnly cookie, guarded against CSRF.

A browser app keeps its access token in memory only. The refresh token lives in a cookie that
scripts cannot read (`HttpOnly`), that travels only over HTTPS (`Secure`), only on requests
made from this site (`SameSite=Strict`) and only to the session routes (`Path`). The refresh
and sign-out routes also require the double-submit token: a second cookie, readable by the
app's script, whose value must come back in the `X-CSRF-Token` header. A page of another site
can neither read that cookie nor set a custom header on a request here without CORS, which
the API never grants.
"""

from __future__ import annotations

import hmac
import secrets

from fastapi import Request, Response

from auth_microservice.sessions.exceptions import CsrfRejected, InvalidRefreshToken
from auth_microservice.settings import AuthSettings

REFRESH_COOKIE = "micropay_refresh"
CSRF_COOKIE = "micropay_csrf"
CSRF_HEADER = "X-CSRF-Token"
SESSION_PATH = "/auth/session"
"""The refresh cookie's Path: sent to POST /auth/session/refresh and DELETE /auth/session only."""
# Fetch metadata a browser sends; anything but these means another site made the request.
_ALLOWED_FETCH_SITES = frozenset({"same-origin", "none"})


def check_fetch_site(request: Request) -> None:
    """Refuse a request that the browser says another site made (Sec-Fetch-Site)."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in _ALLOWED_FETCH_SITES:
        raise CsrfRejected("Requests to the session routes must come from this site.")


def check_csrf(request: Request) -> None:
    """The double-submit check: the X-CSRF-Token header equals the CSRF cookie."""
    check_fetch_site(request)
    cookie = request.cookies.get(CSRF_COOKIE, "")
    header = request.headers.get(CSRF_HEADER, "")
    if not cookie or not hmac.compare_digest(cookie.encode(), header.encode()):
        raise CsrfRejected(
            f"The {CSRF_HEADER} header must repeat the value of the {CSRF_COOKIE} cookie."
        )


def refresh_token_of(request: Request) -> str:
    """The refresh token the cookie holds; InvalidRefreshToken without one."""
    token = request.cookies.get(REFRESH_COOKIE)
    if not token:
        raise InvalidRefreshToken()
    return token


def set_session_cookies(
    response: Response, settings: AuthSettings, refresh_token: str, *, new_csrf: bool
) -> None:
    """Set the refresh cookie (and a fresh CSRF cookie at sign-in), both as long as a sign-in."""
    max_age = settings.refresh_token_validity_days * 86400
    response.set_cookie(
        REFRESH_COOKIE,
        refresh_token,
        max_age=max_age,
        path=SESSION_PATH,
        secure=settings.auth_cookie_secure,
        httponly=True,
        samesite="strict",
    )
    if new_csrf:
        response.set_cookie(
            CSRF_COOKIE,
            secrets.token_urlsafe(32),
            max_age=max_age,
            path="/",
            secure=settings.auth_cookie_secure,
            httponly=False,  # the app's script reads it to send it back in the header
            samesite="strict",
        )


def clear_session_cookies(response: Response, settings: AuthSettings) -> None:
    """Expire both cookies."""
    for name, path, httponly in ((REFRESH_COOKIE, SESSION_PATH, True), (CSRF_COOKIE, "/", False)):
        response.delete_cookie(
            name,
            path=path,
            secure=settings.auth_cookie_secure,
            httponly=httponly,
            samesite="strict",
        )
