"""HTTP routes of registration, confirmation and the user list."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from auth_microservice.dependencies import (
    ActiveAdmin,
    ClientIpDep,
    IdentityDep,
    ListenerDep,
    SessionmakerDep,
    SettingsDep,
)
from auth_microservice.models import SignupAction, User
from auth_microservice.users import limits, service
from auth_microservice.users.schemas import (
    ConfirmationCreate,
    ConfirmationRead,
    ConfirmationResend,
    RegistrationRead,
    ResendRead,
    UserCreate,
    UserPage,
    UserRead,
)
from micropay_common.db import SessionDep
from micropay_common.pagination import LIST_RESPONSES, Limit
from micropay_common.wakeup import Listener

router = APIRouter(prefix="/auth", tags=["auth"])

PROBLEMS: dict[int | str, dict[str, Any]] = {
    503: {"description": "Cognito is throttling, failing or unreachable (Retry-After)"},
}


def rate_limited(counted: str) -> dict[int | str, dict[str, Any]]:
    """The 429 of a route under the sign-up limits, saying what is counted."""
    return {429: {"description": f"`rate_limited` (Retry-After): too many {counted} lately"}}


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    summary="Create an account",
    responses={
        400: {"description": "The password breaks the pool's policy (`rule` names the rule)"},
        409: {"description": "The email is taken (`email_taken`)"},
        **rate_limited("sign-ups from the client address (SIGNUP_MAX_PER_IP)"),
        **PROBLEMS,
    },
)
async def register(
    body: UserCreate,
    session: SessionDep,
    sessionmaker: SessionmakerDep,
    identity: IdentityDep,
    settings: SettingsDep,
    client_ip: ClientIpDep,
    listener: ListenerDep,
) -> RegistrationRead:
    """Sign up in Cognito and mirror the user, all or nothing; confirmed, `user.registered`."""
    # Counted (and committed) first, whatever the answer: a taken email is a probe too.
    await limits.admit(
        sessionmaker, settings, SignupAction.REGISTER, client_ip=client_ip, email=body.email
    )
    user = await service.register(
        session, identity, body.email, body.password, auto_confirm=settings.auth_auto_confirm
    )
    if user.confirmed_at is not None:
        await _answer_once_known(session, listener, sessionmaker, user.id)
    return RegistrationRead(
        user_id=user.id, email=user.email, confirmed=user.confirmed_at is not None
    )


@router.post(
    "/confirm",
    summary="Confirm an email address with the emailed code",
    responses={
        400: {"description": "Wrong or expired code"},
        **rate_limited(
            "confirmation attempts from the client address or for the email, right or wrong"
        ),
        **PROBLEMS,
    },
)
async def confirm(
    body: ConfirmationCreate,
    session: SessionDep,
    sessionmaker: SessionmakerDep,
    identity: IdentityDep,
    settings: SettingsDep,
    client_ip: ClientIpDep,
    listener: ListenerDep,
) -> ConfirmationRead:
    """Confirm the account (publishing `user.registered` once); afterwards it can sign in."""
    # Counted (and committed) before Cognito checks the code, so every wrong code counts.
    await limits.admit(
        sessionmaker, settings, SignupAction.CONFIRM, client_ip=client_ip, email=body.email
    )
    completed = await service.confirm(session, identity, body.email, body.code)
    if completed is not None:
        await _answer_once_known(session, listener, sessionmaker, completed)
    return ConfirmationRead(email=body.email, confirmed=True)


async def _answer_once_known(
    session: AsyncSession,
    listener: Listener,
    sessionmaker: async_sessionmaker[AsyncSession],
    user_id: uuid.UUID,
) -> None:
    """Commit a completed registration, then wait (bounded) until transactions hears of it.

    So the new user's first transfer in does not race the event. Only a registration this
    request completed waits, and only its owner can complete one (the right code, or a
    sign-up of an email nobody holds), so the wait tells nobody whether an email is taken.
    """
    # Committed here rather than by the session dependency on return: the relay cannot
    # deliver an event before the row is committed.
    await session.commit()
    await service.wait_until_known(listener, sessionmaker, user_id)


@router.post(
    "/resend-confirmation",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Send the confirmation code again",
    responses={
        **rate_limited("code requests from the client address or for the email"),
        **PROBLEMS,
    },
)
async def resend_confirmation(
    body: ConfirmationResend,
    sessionmaker: SessionmakerDep,
    identity: IdentityDep,
    settings: SettingsDep,
    client_ip: ClientIpDep,
) -> ResendRead:
    """Accepted whether or not an unconfirmed account exists for the email (no enumeration)."""
    await limits.admit(
        sessionmaker, settings, SignupAction.RESEND, client_ip=client_ip, email=body.email
    )
    await service.resend_confirmation(identity, body.email)
    return ResendRead(detail="If the account awaits confirmation, a new code is on its way.")


@router.get(
    "/users",
    summary="List users (admins only)",
    responses={**LIST_RESPONSES, 403: {"description": "The caller is not in the `admins` group"}},
)
async def list_users(
    session: SessionDep,
    _admin: ActiveAdmin,
    limit: Limit = 10,
    starting_after: Annotated[uuid.UUID | None, Query()] = None,
) -> UserPage:
    """Users newest first, with cursor pagination (`starting_after` = a user id)."""
    users = await service.list_users(session, limit=limit, starting_after=starting_after)
    return UserPage.of([_read(user) for user in users], limit)


def _read(user: User) -> UserRead:
    return UserRead(
        user_id=user.id,
        email=user.email,
        confirmed=user.confirmed_at is not None,
        created_at=user.created_at,
    )
