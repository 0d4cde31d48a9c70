"""HTTP routes of sign-in, refresh, logout, the caller's identity and the gateway's check."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response, status
from fastapi.responses import JSONResponse

from auth_microservice.dependencies import (
    ActiveUser,
    ClientIpDep,
    DenySetDep,
    IdentityDep,
    SettingsDep,
    state_of,
)
from auth_microservice.sessions import cookies, service
from auth_microservice.sessions.exceptions import InvalidCredentials
from auth_microservice.sessions.schemas import (
    LoginCreate,
    MeRead,
    RefreshCreate,
    RefreshRead,
    SessionRead,
    TokenRead,
)
from micropay_common.db import SessionDep
from micropay_common.errors import problem_response
from micropay_common.security import bearer_token

router = APIRouter(prefix="/auth", tags=["auth"])
gateway_router = APIRouter(prefix="/auth", tags=["auth"])
"""The gateway's check alone, included before every other router: routes are matched in order,
and this one is asked before every request the gateway lets through."""

UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"description": "Cognito is throttling, failing or unreachable (Retry-After)"}
}
# nginx's auth_request checks with GET; other gateways' forward-auth may keep the original method.
# Documented once as GET; the other methods answer the same without repeating it in OpenAPI.
OTHER_VERIFY_METHODS = ["HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@router.post(
    "/login",
    summary="Sign in with email and password",
    responses={
        401: {"description": "Wrong password or unknown email (`invalid_credentials`)"},
        403: {"description": "Email not confirmed (`email_not_confirmed`)"},
        429: {"description": "Too many failures for the email or the address (Retry-After)"},
        **UNAVAILABLE,
    },
    response_model=TokenRead,
)
async def login(
    body: LoginCreate,
    request: Request,
    session: SessionDep,
    identity: IdentityDep,
    settings: SettingsDep,
    client_ip: ClientIpDep,
) -> TokenRead | JSONResponse:
    """Cognito ADMIN_USER_PASSWORD_AUTH, throttled per email and per client address."""
    try:
        tokens = await service.login(
            session,
            identity,
            settings,
            email=body.email,
            password=body.password,
            client_ip=client_ip,
        )
    except InvalidCredentials as exc:
        # Returned, not raised: the request's transaction must commit the recorded failure.
        return problem_response(exc.status, exc.to_body(request.url.path), exc.headers)
    assert tokens.refresh_token is not None
    return TokenRead(
        access_token=tokens.access_token,
        id_token=tokens.id_token,
        refresh_token=tokens.refresh_token,
        expires_in=tokens.expires_in,
    )


@router.post(
    "/refresh",
    summary="New tokens from a refresh token",
    responses={401: {"description": "Unknown, expired or revoked refresh token"}, **UNAVAILABLE},
)
async def refresh(body: RefreshCreate, session: SessionDep, identity: IdentityDep) -> RefreshRead:
    """REFRESH_TOKEN_AUTH for a sign-in that is still live (not signed out)."""
    tokens = await service.refresh(session, identity, body.refresh_token)
    return RefreshRead(
        access_token=tokens.access_token,
        id_token=tokens.id_token,
        refresh_token=tokens.refresh_token,
        expires_in=tokens.expires_in,
    )


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Sign out everywhere, revoking the tokens at once",
    responses={401: {"description": "Invalid or already revoked access token"}, **UNAVAILABLE},
)
async def logout(
    user: ActiveUser, session: SessionDep, identity: IdentityDep, deny_set: DenySetDep
) -> Response:
    """Global sign-out in Cognito; the access tokens of the user's sign-ins are deny-listed.

    Every service refuses them from the moment this answers (this replica at once, the others
    when the commit's notification reaches them).
    """
    await service.logout(session, identity, deny_set, user)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


COOKIE_DESCRIPTION = (
    'For browser apps (docs/design.md, "The browser\'s sign-in"): the refresh token travels '
    f"in the HttpOnly `{cookies.REFRESH_COOKIE}` cookie (Secure, SameSite=Strict, "
    f"Path={cookies.SESSION_PATH}); `{cookies.CSRF_COOKIE}` is the double-submit token that "
    f"the `{cookies.CSRF_HEADER}` header repeats."
)
CSRF_REFUSED: dict[int | str, dict[str, Any]] = {
    403: {"description": "Made by another site, or without the CSRF token (`csrf_rejected`)"}
}


@router.post(
    "/session",
    summary="Sign in a browser: tokens in the body, the refresh token in a cookie",
    description=COOKIE_DESCRIPTION,
    responses={
        401: {"description": "Wrong password or unknown email (`invalid_credentials`)"},
        403: {"description": "Email not confirmed, or a request of another site"},
        429: {"description": "Too many failures for the email or the address (Retry-After)"},
        **UNAVAILABLE,
    },
    response_model=SessionRead,
)
async def create_browser_session(
    body: LoginCreate,
    request: Request,
    response: Response,
    session: SessionDep,
    identity: IdentityDep,
    settings: SettingsDep,
    client_ip: ClientIpDep,
) -> SessionRead | JSONResponse:
    """POST /auth/login for a browser: sets the refresh and CSRF cookies."""
    cookies.check_fetch_site(request)
    try:
        tokens = await service.login(
            session,
            identity,
            settings,
            email=body.email,
            password=body.password,
            client_ip=client_ip,
        )
    except InvalidCredentials as exc:
        # Returned, not raised: the request's transaction must commit the recorded failure.
        return problem_response(exc.status, exc.to_body(request.url.path), exc.headers)
    assert tokens.refresh_token is not None
    cookies.set_session_cookies(response, settings, tokens.refresh_token, new_csrf=True)
    return SessionRead(
        access_token=tokens.access_token, id_token=tokens.id_token, expires_in=tokens.expires_in
    )


@router.post(
    "/session/refresh",
    summary="New tokens for a browser, from the refresh cookie",
    description=COOKIE_DESCRIPTION,
    responses={
        401: {"description": "No, unknown, expired or revoked refresh token"},
        **CSRF_REFUSED,
        **UNAVAILABLE,
    },
)
async def refresh_browser_session(
    request: Request,
    response: Response,
    session: SessionDep,
    identity: IdentityDep,
    settings: SettingsDep,
    csrf_token: Annotated[
        str | None, Header(alias=cookies.CSRF_HEADER, description="The CSRF cookie's value.")
    ] = None,
) -> SessionRead:
    """REFRESH_TOKEN_AUTH with the cookie's token; a rotated refresh token replaces the cookie."""
    del csrf_token  # documented here, checked against the cookie by check_csrf
    cookies.check_csrf(request)
    tokens = await service.refresh(session, identity, cookies.refresh_token_of(request))
    if tokens.refresh_token:
        cookies.set_session_cookies(response, settings, tokens.refresh_token, new_csrf=False)
    return SessionRead(
        access_token=tokens.access_token, id_token=tokens.id_token, expires_in=tokens.expires_in
    )


@router.delete(
    "/session",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Forget a browser's sign-in: clear its cookies",
    description=COOKIE_DESCRIPTION
    + " Revoking the sign-in itself is POST /auth/logout, which the app calls first.",
    responses=CSRF_REFUSED,
)
async def delete_browser_session(
    request: Request,
    settings: SettingsDep,
    csrf_token: Annotated[
        str | None, Header(alias=cookies.CSRF_HEADER, description="The CSRF cookie's value.")
    ] = None,
) -> Response:
    """Expire the refresh and CSRF cookies."""
    del csrf_token
    cookies.check_csrf(request)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    cookies.clear_session_cookies(response, settings)
    return response


@router.get("/me", summary="The caller", responses={401: {"description": "Invalid token"}})
async def me(user: ActiveUser) -> MeRead:
    """The caller's id, email and groups, from the verified access token."""
    return MeRead(user_id=user.id, email=user.email, groups=sorted(user.groups))


@gateway_router.api_route("/verify", methods=OTHER_VERIFY_METHODS, include_in_schema=False)
@gateway_router.get(
    "/verify",
    summary="The gateway's access check",
    response_class=Response,
    responses={
        200: {
            "description": "Valid: the caller in `X-User-Id`, `X-User-Email`, `X-User-Groups`",
            "content": None,
        },
        401: {"description": "Missing, invalid, expired or revoked access token"},
    },
)
async def verify(request: Request) -> Response:
    """Verify the bearer token locally (cached JWKS) and against the deny-list; no Cognito call."""
    # Every gateway request comes here first: no dependency to solve, the state read once.
    state = state_of(request)
    token = bearer_token(request)
    user = await service.verify_token(
        state.token_verifier, state.revocations.deny_set, state.deny_list, token
    )
    return Response(status_code=status.HTTP_200_OK, headers=service.identity_headers(user))
