"""FastAPI dependencies of the auth service: what the app holds, and active callers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from auth_microservice.identity import IdentityProvider
from auth_microservice.sessions.service import ensure_active
from auth_microservice.settings import AuthSettings
from auth_microservice.state import AuthState
from micropay_common.db import SessionDep
from micropay_common.errors import Forbidden
from micropay_common.revocation import DenySet
from micropay_common.security import AuthenticatedUser, CurrentUser
from micropay_common.wakeup import Listener

StateDep = Annotated[AuthState, Depends(AuthState.of_request)]


def state_of(request: Request) -> AuthState:
    """The app's state, read directly: for the gateway's check, which solves no dependency."""
    return AuthState.of(request.app)


async def client_ip(request: Request, state: StateDep) -> str:
    """The caller's address as the trusted proxies report it."""
    peer = request.client.host if request.client else None
    return state.client_addresses.resolve(peer, request.headers)


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


IdentityDep = Annotated[IdentityProvider, Depends(AuthState.provide(lambda s: s.identity))]
SettingsDep = Annotated[AuthSettings, Depends(AuthState.provide(lambda s: s.settings))]
SessionmakerDep = Annotated[
    async_sessionmaker[AsyncSession], Depends(AuthState.provide(lambda s: s.sessionmaker))
]
"""For work that must commit apart from the request's transaction (the sign-up limits)."""
ListenerDep = Annotated[Listener, Depends(AuthState.provide(lambda s: s.listener))]
"""The process's LISTEN connection (a registration waits on it for its event's delivery)."""
DenySetDep = Annotated[DenySet, Depends(AuthState.provide(lambda s: s.revocations.deny_set))]
ClientIpDep = Annotated[str, Depends(client_ip)]
ActiveUser = Annotated[AuthenticatedUser, Depends(active_user)]
ActiveAdmin = Annotated[AuthenticatedUser, Depends(active_admin)]
