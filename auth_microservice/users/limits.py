"""The auth service's own limits on sign-ups, confirmation attempts and code resends.

The gateway's `limit_req` caps these routes per address too, but only where nginx stands in
front (not on AWS, not on the service's own port); these limits hold wherever the service runs,
across replicas, over a sliding window of SIGNUP_WINDOW_SECONDS:
- per client address: sign-ups, confirmation attempts (right or wrong) and resends;
- per email, from any address: confirmation attempts (guessing a six-digit code) and resends.

A refused request is not counted, so an address or an email gets its allowance back as its
oldest counted attempts leave the window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from auth_microservice.models import SignupAction
from auth_microservice.settings import AuthSettings
from auth_microservice.users import repository
from auth_microservice.users.exceptions import SignupRateLimited
from micropay_common.locks import lock_for_transaction


@dataclass(frozen=True)
class SignupLimit:
    """How many attempts of one action the window allows per address and per email."""

    what: str
    per_ip: int
    per_email: int | None


def limit_of(settings: AuthSettings, action: SignupAction) -> SignupLimit:
    """The configured limit of one action."""
    match action:
        case SignupAction.REGISTER:
            return SignupLimit("sign-ups", settings.signup_max_per_ip, None)
        case SignupAction.CONFIRM:
            return SignupLimit(
                "confirmation attempts",
                settings.confirm_max_attempts_per_ip,
                settings.confirm_max_attempts_per_email,
            )
        case SignupAction.RESEND:
            return SignupLimit(
                "confirmation code requests",
                settings.resend_max_per_ip,
                settings.resend_max_per_email,
            )


async def _refuse_at_limit(
    session: AsyncSession,
    action: SignupAction,
    *,
    limit: int,
    window_seconds: int,
    detail: str,
    client_ip: str | None = None,
    email: str | None = None,
) -> None:
    remaining = await repository.seconds_until_below(
        session,
        action,
        limit=limit,
        window_seconds=window_seconds,
        client_ip=client_ip,
        email=email,
    )
    if remaining is not None:
        raise SignupRateLimited(detail, retry_after=max(1, math.ceil(remaining)))


async def count_attempt(
    session: AsyncSession,
    settings: AuthSettings,
    action: SignupAction,
    *,
    client_ip: str,
    email: str,
) -> None:
    """Record one attempt, or raise SignupRateLimited when its address or email is at the limit."""
    limit = limit_of(settings, action)
    window = settings.signup_window_seconds
    # Attempts from one address queue here (across replicas), so concurrent ones cannot all pass
    # the count; the email's lock is always taken second, so two locks never deadlock.
    await lock_for_transaction(session, f"auth.signup-ip:{client_ip}")
    await _refuse_at_limit(
        session,
        action,
        limit=limit.per_ip,
        window_seconds=window,
        client_ip=client_ip,
        detail=f"Too many {limit.what} from this address; retry later.",
    )
    if limit.per_email is not None:
        await lock_for_transaction(session, f"auth.signup-email:{email}")
        await _refuse_at_limit(
            session,
            action,
            limit=limit.per_email,
            window_seconds=window,
            email=email,
            detail=f"Too many {limit.what} for this email address; retry later.",
        )
    await repository.add_attempt(session, action, client_ip=client_ip, email=email)
    await session.flush()


async def admit(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: AuthSettings,
    action: SignupAction,
    *,
    client_ip: str,
    email: str,
) -> None:
    """Count one attempt in a transaction of its own, committed before the request's work runs.

    Not in the request's transaction: that one rolls back when the answer is an error (a wrong
    code, a taken email), and those attempts are the ones that must count; a transaction of its
    own also holds the address's lock only for the count, never while Cognito answers. It is
    called before the request's session first touches the database, so a request still holds
    one pooled connection at a time.
    """
    async with sessionmaker() as session, session.begin():
        await count_attempt(session, settings, action, client_ip=client_ip, email=email)


async def purge_attempts(session: AsyncSession, settings: AuthSettings) -> int:
    """Delete the attempts that have left the window; how many."""
    return await repository.purge_attempts(session, window_seconds=settings.signup_window_seconds)
