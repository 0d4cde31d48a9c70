"""HTTP routes of registration, confirmation and the user list."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, status

from auth_microservice.dependencies import (
    ActiveAdmin,
    ClientIpDep,
    IdentityDep,
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
) -> RegistrationRead:
    """Sign up in Cognito and mirror the user, all or nothing; confirmed, `user.registered`."""
    # Counted (and committed) first, whatever the answer: a taken email is a probe too.
    await limits.admit(
        sessionmaker, settings, SignupAction.REGISTER, client_ip=client_ip, email=body.email
    )
    user = await service.register(
        session, identity, body.email, body.password, auto_confirm=settings.auth_auto_confirm
    )
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
) -> ConfirmationRead:
    """Confirm the account (publishing `user.registered` once); afterwards it can sign in."""
    # Counted (and committed) before Cognito checks the code, so every wrong code counts.
    await limits.admit(
        sessionmaker, settings, SignupAction.CONFIRM, client_ip=client_ip, email=body.email
    )
    await service.confirm(session, identity, body.email, body.code)
    return ConfirmationRead(email=body.email, confirmed=True)


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
