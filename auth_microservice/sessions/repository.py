"""SQL of sign-ins, the deny-list and login failures."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from auth_microservice.models import LoginFailure, RevokedToken, Session, User
from micropay_common.db import asyncpg_connect_kwargs
from micropay_common.errors import ServiceUnavailable
from micropay_common.revocation import REVOCATIONS_CHANNEL

_IS_REVOKED = text("SELECT EXISTS (SELECT 1 FROM auth.revoked_tokens WHERE origin_jti = :key)")
_IS_REVOKED_SQL = "SELECT EXISTS (SELECT 1 FROM auth.revoked_tokens WHERE origin_jti = $1)"
_CONNECTION_ERRORS = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError)


async def is_revoked(connection: AsyncConnection | AsyncSession, key: str) -> bool:
    """Whether the sign-in `key` is on the deny-list (within a request's session)."""
    return bool((await connection.execute(_IS_REVOKED, {"key": key})).scalar_one())


async def _keep_connection(connection: Any) -> None:
    """Pool reset hook: the probe leaves no session state, so skip asyncpg's RESET round trip."""


class DenyList:
    """The deny-list probe of GET /auth/verify: a small asyncpg pool and one prepared SELECT.

    The request path of every gateway call: no ORM, no pre-ping and no reset on return, so a
    check costs one round trip to PostgreSQL.
    """

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, database_url: str, *, max_size: int, application_name: str) -> DenyList:
        """A pool for `database_url` that connects on first use (up to `max_size`)."""
        pool = await asyncpg.create_pool(
            **asyncpg_connect_kwargs(database_url),
            min_size=0,
            max_size=max_size,
            reset=_keep_connection,
            command_timeout=5,
            server_settings={"application_name": application_name},
        )
        return cls(pool)

    async def contains(self, key: str) -> bool:
        """Whether `key` is deny-listed; one retry on a dropped connection, then 503."""
        for attempt in (1, 2):
            try:
                return bool(await self._pool.fetchval(_IS_REVOKED_SQL, key))
            except _CONNECTION_ERRORS as exc:
                if attempt == 2:
                    raise ServiceUnavailable(
                        "The token check cannot reach its database; retry shortly.",
                        retry_after=2,
                    ) from exc
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        """Close the pool's connections."""
        await self._pool.close()


@dataclass(frozen=True)
class FailureCount:
    """Failures inside the window, and when the oldest and the latest of them happened."""

    count: int
    oldest: datetime | None
    latest: datetime | None


async def recent_failures(
    session: AsyncSession,
    *,
    window_seconds: int,
    email: str | None = None,
    client_ip: str | None = None,
) -> FailureCount:
    """Failed sign-ins for an email or a client address within the last `window_seconds`."""
    query = select(
        func.count(), func.min(LoginFailure.failed_at), func.max(LoginFailure.failed_at)
    ).where(
        LoginFailure.failed_at > func.now() - func.make_interval(0, 0, 0, 0, 0, 0, window_seconds)
    )
    if email is not None:
        query = query.where(LoginFailure.email == email)
    if client_ip is not None:
        query = query.where(LoginFailure.client_ip == client_ip)
    count, oldest, latest = (await session.execute(query)).one()
    return FailureCount(int(count), oldest, latest)


async def record_failure(session: AsyncSession, email: str, client_ip: str) -> None:
    """Remember one failed sign-in."""
    await session.execute(
        insert(LoginFailure).values(email=email, client_ip=client_ip, failed_at=func.now())
    )


async def clear_failures(session: AsyncSession, email: str) -> None:
    """Forget an email's failures (after a successful sign-in)."""
    await session.execute(delete(LoginFailure).where(LoginFailure.email == email))


async def database_now(session: AsyncSession) -> datetime:
    """The database's clock (the one every window and expiry is measured against)."""
    return (await session.execute(select(func.now()))).scalar_one()


async def create_session(
    session: AsyncSession,
    *,
    origin_jti: str,
    user_id: uuid.UUID,
    refresh_token_hash: str,
    access_expires_at: datetime,
    expires_at: datetime,
) -> None:
    """Record a sign-in."""
    await session.execute(
        insert(Session).values(
            origin_jti=origin_jti,
            user_id=user_id,
            refresh_token_hash=refresh_token_hash,
            access_expires_at=access_expires_at,
            expires_at=expires_at,
        )
    )


@dataclass(frozen=True)
class RefreshableSession:
    """A live sign-in found by its refresh token, with the Cognito username it belongs to."""

    origin_jti: str
    user_id: uuid.UUID
    email: str


async def find_live_session(
    session: AsyncSession, refresh_token_hash: str
) -> RefreshableSession | None:
    """The unrevoked, unexpired sign-in holding this refresh token, locked for update."""
    row = (
        await session.execute(
            select(Session.origin_jti, Session.user_id, User.email)
            .join(User, User.id == Session.user_id)
            .where(
                Session.refresh_token_hash == refresh_token_hash,
                Session.revoked_at.is_(None),
                Session.expires_at > func.now(),
            )
            .with_for_update(of=Session)
        )
    ).one_or_none()
    if row is None:
        return None
    return RefreshableSession(origin_jti=row.origin_jti, user_id=row.user_id, email=row.email)


async def update_session_tokens(
    session: AsyncSession,
    origin_jti: str,
    *,
    access_expires_at: datetime,
    refresh_token_hash: str | None,
) -> None:
    """Note a refresh: the new access token's expiry, and the new refresh token if rotated."""
    values: dict[str, object] = {"access_expires_at": access_expires_at}
    if refresh_token_hash is not None:
        values["refresh_token_hash"] = refresh_token_hash
    await session.execute(update(Session).where(Session.origin_jti == origin_jti).values(values))


async def revoke_user_sessions(
    session: AsyncSession, user_id: uuid.UUID
) -> Sequence[tuple[str, datetime]]:
    """End every live sign-in of a user; returns (origin_jti, access_expires_at) of each."""
    rows = await session.execute(
        update(Session)
        .where(Session.user_id == user_id, Session.revoked_at.is_(None))
        .values(revoked_at=func.now())
        .returning(Session.origin_jti, Session.access_expires_at)
    )
    return [(row.origin_jti, row.access_expires_at) for row in rows]


async def deny(
    session: AsyncSession, user_id: uuid.UUID, entries: Sequence[tuple[str, datetime]]
) -> None:
    """Put sign-ins on the deny-list until the given times (a later time wins on repeats), and
    announce it to every replica (`NOTIFY`, sent at commit)."""
    if not entries:
        return
    statement = insert(RevokedToken).values(
        [
            {
                "origin_jti": key,
                "user_id": user_id,
                "expires_at": expires_at,
                # The time of this statement, not of the transaction's start: replicas read
                # the rows revoked since their last read, which this must not precede by much.
                "revoked_at": func.clock_timestamp(),
            }
            for key, expires_at in entries
        ]
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[RevokedToken.origin_jti],
            set_={
                "expires_at": func.greatest(RevokedToken.expires_at, statement.excluded.expires_at),
                "revoked_at": func.clock_timestamp(),
            },
        )
    )
    # Delivered to every replica's feed when the transaction commits, never before.
    await session.execute(select(func.pg_notify(REVOCATIONS_CHANNEL, "")))


@dataclass(frozen=True)
class Purged:
    """Rows removed by one purge pass."""

    revoked_tokens: int
    sessions: int
    login_failures: int


async def purge(session: AsyncSession, *, failure_window_seconds: int) -> Purged:
    """Delete deny-list rows and sign-ins past their expiry, and failures outside the window."""
    revoked = await session.execute(
        delete(RevokedToken).where(RevokedToken.expires_at < func.now())
    )
    sessions = await session.execute(delete(Session).where(Session.expires_at < func.now()))
    failures = await session.execute(
        delete(LoginFailure).where(
            LoginFailure.failed_at
            < func.now() - func.make_interval(0, 0, 0, 0, 0, 0, failure_window_seconds)
        )
    )
    return Purged(
        revoked_tokens=revoked.rowcount,  # type: ignore[attr-defined]
        sessions=sessions.rowcount,  # type: ignore[attr-defined]
        login_failures=failures.rowcount,  # type: ignore[attr-defined]
    )
