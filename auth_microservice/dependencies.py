"""FastAPI dependencies of the auth service: its Cognito client, settings and active callers."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from auth_microservice.client_ip import ClientAddressResolver
from auth_microservice.identity import IdentityProvider
from auth_microservice.sessions.service import ensure_active
from auth_microservice.settings import AuthSettings
from micropay_common.db import SessionDep
from micropay_common.errors import Forbidden
from micropay_common.security import AuthenticatedUser, CurrentUser


def identity_provider(request: Request) -> IdentityProvider:
    """The app's Cognito client."""
    return cast(IdentityProvider, request.app.state.identity)


def auth_settings(request: Request) -> AuthSettings:
    """The app's settings."""
    return cast(AuthSettings, request.app.state.settings)


def client_ip(request: Request) -> str:
    """The caller's address as the trusted proxies report it."""
    resolver: ClientAddressResolver = request.app.state.client_addresses
    peer = request.client.host if request.client else None
    return resolver.resolve(peer, request.headers)


async def active_user(user: CurrentUser, session: SessionDep) -> AuthenticatedUser:
    """A verified caller whose sign-in has not been revoked (logout)."""
    await ensure_active(session, user)
    return user


async def active_admin(
    user: Annotated[AuthenticatedUser, Depends(active_user)],
) -> AuthenticatedUser:
    """An active caller in the `admins` group."""
    if not user.in_group("admins"):
        raise Forbidden("This endpoint requires membership of the 'admins' group.")
    return user


IdentityDep = Annotated[IdentityProvider, Depends(identity_provider)]
SettingsDep = Annotated[AuthSettings, Depends(auth_settings)]
ClientIpDep = Annotated[str, Depends(client_ip)]
ActiveUser = Annotated[AuthenticatedUser, Depends(active_user)]
ActiveAdmin = Annotated[AuthenticatedUser, Depends(active_admin)]
