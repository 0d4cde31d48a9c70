"""Sign-in with throttling, refresh, logout with immediate revocation, and the token check."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from auth_microservice.exceptions import IdentityProviderUnavailable
from auth_microservice.identity import CognitoRejected, IdentityProvider, Tokens
from auth_microservice.sessions import repository
from auth_microservice.sessions.exceptions import (
    EmailNotConfirmed,
    InvalidCredentials,
    InvalidRefreshToken,
    LoginThrottled,
)
from auth_microservice.settings import AuthSettings
from auth_microservice.users import service as users_service
from micropay_common.db import after_commit
from micropay_common.locks import lock_for_transaction
from micropay_common.revocation import DenySet, TokenRevoked, revocation_key
from micropay_common.security import AuthenticatedUser, TokenVerifier

logger = logging.getLogger("micropay.auth.sessions")


def hash_token(token: str) -> str:
    """SHA-256 of a token: how refresh tokens are stored and looked up."""
    return hashlib.sha256(token.encode()).hexdigest()


def _claims(access_token: str) -> dict[str, Any]:
    # Fresh from Cognito over TLS: read, not verified (GET /auth/verify verifies every use).
    claims: dict[str, Any] = jwt.decode(access_token, options={"verify_signature": False})
    return claims


def _expiry(claims: dict[str, Any]) -> datetime:
    return datetime.fromtimestamp(int(claims["exp"]), UTC)


def _retry_after(oldest: datetime | None, now: datetime, window_seconds: int) -> int:
    if oldest is None:
        return window_seconds
    remaining = (oldest + timedelta(seconds=window_seconds) - now).total_seconds()
    return max(1, math.ceil(remaining))


def login_delay(
    failures: int, free_failures: int, base_seconds: float, max_seconds: float
) -> float:
    """Seconds the next sign-in waits after the latest failure: 0, then base doubling to max."""
    if failures < free_failures:
        return 0.0
    # The exponent is bounded so that a long run of failures cannot overflow the float.
    return min(max_seconds, base_seconds * 2.0 ** min(failures - free_failures, 32))


def _refuse_too_early(
    failures: repository.FailureCount,
    free_failures: int,
    settings: AuthSettings,
    now: datetime,
    detail: str,
) -> None:
    delay = login_delay(
        failures.count,
        free_failures,
        settings.login_delay_base_seconds,
        settings.login_delay_max_seconds,
    )
    if delay <= 0 or failures.latest is None:
        return
    remaining = (failures.latest + timedelta(seconds=delay) - now).total_seconds()
    if remaining > 0:
        raise LoginThrottled(detail, retry_after=max(1, math.ceil(remaining)))


async def check_throttle(
    session: AsyncSession, settings: AuthSettings, email: str, client_ip: str
) -> None:
    """Raise LoginThrottled while the address is over its hard limit or a delay runs.

    An email is only ever delayed, never refused outright: an attacker guessing its password
    slows its sign-ins down (the wait doubles with each failure, up to a cap), but its owner
    signs in once the current wait has passed. An address is delayed the same way and refused
    for the rest of the window once it failed LOGIN_MAX_FAILURES_PER_IP times.
    """
    window = settings.login_failure_window_seconds
    now = await repository.database_now(session)
    by_ip = await repository.recent_failures(session, window_seconds=window, client_ip=client_ip)
    if by_ip.count >= settings.login_max_failures_per_ip:
        raise LoginThrottled(
            "Too many failed sign-ins from this address; wait before trying again.",
            retry_after=_retry_after(by_ip.oldest, now, window),
        )
    _refuse_too_early(
        by_ip,
        settings.login_delay_after_failures_per_ip,
        settings,
        now,
        "Recent failed sign-ins from this address; wait before trying again.",
    )
    by_email = await repository.recent_failures(session, window_seconds=window, email=email)
    _refuse_too_early(
        by_email,
        settings.login_delay_after_failures_per_email,
        settings,
        now,
        "Recent failed sign-ins for this account; wait before trying again.",
    )


async def login(
    session: AsyncSession,
    identity: IdentityProvider,
    settings: AuthSettings,
    *,
    email: str,
    password: str,
    client_ip: str,
) -> Tokens:
    """Sign in; a wrong password is recorded (flushed) before InvalidCredentials is raised."""
    # One account's sign-ins queue here, so concurrent guesses cannot all pass the count.
    await lock_for_transaction(session, f"auth.login:{email}")
    await check_throttle(session, settings, email, client_ip)
    try:
        tokens = await identity.password_sign_in(email, password)
    except CognitoRejected as exc:
        if exc.code in ("NotAuthorizedException", "UserNotFoundException"):
            await repository.record_failure(session, email, client_ip)
            await session.flush()
            raise InvalidCredentials() from exc
        if exc.code == "UserNotConfirmedException":
            raise EmailNotConfirmed() from exc
        logger.error("unexpected Cognito answer on sign-in: %s", exc)
        raise IdentityProviderUnavailable() from exc
    if tokens.refresh_token is None:
        logger.error("Cognito signed a user in without a refresh token")
        raise IdentityProviderUnavailable()
    claims = _claims(tokens.access_token)
    user_id = uuid.UUID(str(claims["sub"]))
    await _refuse_unconfirmed(session, identity, user_id, email)
    await repository.clear_failures(session, email)
    now = await repository.database_now(session)
    await repository.create_session(
        session,
        origin_jti=str(claims.get("origin_jti") or claims["jti"]),
        user_id=user_id,
        refresh_token_hash=hash_token(tokens.refresh_token),
        access_expires_at=_expiry(claims),
        expires_at=now + timedelta(days=settings.refresh_token_validity_days),
    )
    await session.flush()
    return tokens


async def _refuse_unconfirmed(
    session: AsyncSession, identity: IdentityProvider, user_id: uuid.UUID, email: str
) -> None:
    """Refuse unconfirmed users, ending the sign-in Cognito granted them."""
    if await users_service.ensure_confirmed(session, identity, user_id, email):
        return
    with contextlib.suppress(CognitoRejected, IdentityProviderUnavailable):
        await identity.global_sign_out(email)
    raise EmailNotConfirmed()


async def refresh(session: AsyncSession, identity: IdentityProvider, refresh_token: str) -> Tokens:
    """New tokens for a live sign-in; revoked, unknown or expired refresh tokens are refused."""
    found = await repository.find_live_session(session, hash_token(refresh_token))
    if found is None:
        raise InvalidRefreshToken()
    try:
        tokens = await identity.refresh(found.email, refresh_token)
    except CognitoRejected as exc:
        if exc.code in ("NotAuthorizedException", "UserNotFoundException"):
            raise InvalidRefreshToken() from exc
        logger.error("unexpected Cognito answer on refresh: %s", exc)
        raise IdentityProviderUnavailable() from exc
    await repository.update_session_tokens(
        session,
        found.origin_jti,
        access_expires_at=_expiry(_claims(tokens.access_token)),
        refresh_token_hash=hash_token(tokens.refresh_token) if tokens.refresh_token else None,
    )
    await session.flush()
    return tokens


async def logout(
    session: AsyncSession, identity: IdentityProvider, deny_set: DenySet, user: AuthenticatedUser
) -> None:
    """Sign out in Cognito and deny-list the user's sign-ins until their tokens expire.

    Every replica of every service learns of it when the transaction commits (the deny-list
    rows and their NOTIFY), this replica at once: its deny-set takes the keys on commit.
    """
    user_id = uuid.UUID(user.id)
    until: dict[str, datetime] = {
        revocation_key(user): datetime.fromtimestamp(user.expires_at, UTC)
    }
    # Cognito's global sign-out ends every sign-in of the user, so the deny-list does too.
    for origin_jti, access_expires_at in await repository.revoke_user_sessions(session, user_id):
        until[origin_jti] = max(until.get(origin_jti, access_expires_at), access_expires_at)
    try:
        await identity.global_sign_out(user.username)
    except CognitoRejected as exc:
        if exc.code != "UserNotFoundException":
            logger.error("unexpected Cognito answer on sign-out: %s", exc)
            raise IdentityProviderUnavailable() from exc
    # Written after Cognito answered, so the rows' `revoked_at` is moments before the commit:
    # the replicas' reads of rows revoked since their last read rely on that.
    await repository.deny(session, user_id, list(until.items()))
    await session.flush()

    def deny_here() -> None:
        for key, expires in until.items():
            deny_set.add(key, expires.timestamp())

    after_commit(session, deny_here)


async def ensure_active(
    connection: AsyncConnection | AsyncSession, user: AuthenticatedUser
) -> None:
    """Raise TokenRevoked when the user's sign-in is on the deny-list."""
    if await repository.is_revoked(connection, revocation_key(user)):
        raise TokenRevoked()


async def verify_token(
    verifier: TokenVerifier, deny_set: DenySet, deny_list: repository.DenyList, token: str
) -> AuthenticatedUser:
    """The gateway's check: local JWT verification and the deny-list, no Cognito call.

    While a read of `auth.revoked_tokens` that began within REVOCATION_MAX_STALENESS_SECONDS
    confirmed the replica's deny-set, the set is the answer (a dict lookup): a logout committed
    before that read is in it, so a revoked token is refused within that bound, as everywhere
    else. Only a stale set (its feed reconnecting) costs a probe of the table itself, so the
    check never waits for the feed and never guesses.
    """
    user = await verifier.authenticate(token)
    key = revocation_key(user)
    if key in deny_set:
        raise TokenRevoked()
    if not deny_set.is_fresh() and await deny_list.contains(key):
        raise TokenRevoked()
    return user


def identity_headers(user: AuthenticatedUser) -> dict[str, str]:
    """What the gateway passes on about the caller: `X-User-Id`, `X-User-Email`, `X-User-Groups`."""
    return {
        "X-User-Id": user.id,
        "X-User-Email": user.email,
        "X-User-Groups": ",".join(sorted(user.groups)),
    }


async def purge_expired(session: AsyncSession, settings: AuthSettings) -> repository.Purged:
    """Remove expired deny-list rows and sign-ins, and failures older than the window."""
    return await repository.purge(
        session, failure_window_seconds=settings.login_failure_window_seconds
    )
