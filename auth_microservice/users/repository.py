"""SQL of the `auth.users` mirror and of the sign-up attempts counted for the limits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, delete, func, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from auth_microservice.models import SignupAction, SignupAttempt, User


async def find_by_email(session: AsyncSession, email: str) -> User | None:
    """The user with this (normalised) email."""
    return (await session.execute(select(User).where(User.email == email))).scalar_one_or_none()


async def find_by_id(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    """The user with this Cognito `sub`."""
    return await session.get(User, user_id)


async def add(session: AsyncSession, user_id: uuid.UUID, email: str, *, confirmed: bool) -> User:
    """Insert a user and flush, so constraint violations surface here."""
    user = User(id=user_id, email=email, confirmed_at=func.now() if confirmed else None)
    session.add(user)
    await session.flush()
    await session.refresh(user)
    return user


async def mark_confirmed(session: AsyncSession, email: str) -> uuid.UUID | None:
    """Record that the email was confirmed; the user's id the first time, else None."""
    return (
        await session.execute(
            update(User)
            .where(User.email == email, User.confirmed_at.is_(None))
            .values(confirmed_at=func.now())
            .returning(User.id)
        )
    ).scalar_one_or_none()


async def page(session: AsyncSession, *, limit: int, after: User | None) -> Sequence[User]:
    """Up to `limit` users, newest first, strictly after `after` in that order."""
    query = select(User).order_by(User.created_at.desc(), User.id.desc()).limit(limit)
    if after is not None:
        query = query.where(tuple_(User.created_at, User.id) < tuple_(after.created_at, after.id))
    return (await session.execute(query)).scalars().all()


def _window_start(seconds: int) -> ColumnElement[datetime]:
    """The database's now minus the window: attempts after it count."""
    start: ColumnElement[datetime] = func.now() - func.make_interval(0, 0, 0, 0, 0, 0, seconds)
    return start


async def seconds_until_below(
    session: AsyncSession,
    action: SignupAction,
    *,
    limit: int,
    window_seconds: int,
    client_ip: str | None = None,
    email: str | None = None,
) -> float | None:
    """Seconds until fewer than `limit` attempts are left in the window; None when they already are.

    The `limit`-th newest attempt within the window is the one that must leave it.
    """
    query = (
        # How long after the window's start it was made = how long until it leaves the window.
        select(func.extract("epoch", SignupAttempt.attempted_at - _window_start(window_seconds)))
        .where(
            SignupAttempt.action == action,
            SignupAttempt.attempted_at > _window_start(window_seconds),
        )
        .order_by(SignupAttempt.attempted_at.desc())
        .offset(limit - 1)
        .limit(1)
    )
    if client_ip is not None:
        query = query.where(SignupAttempt.client_ip == client_ip)
    if email is not None:
        query = query.where(SignupAttempt.email == email)
    remaining = (await session.execute(query)).scalar_one_or_none()
    return None if remaining is None else float(remaining)


async def add_attempt(
    session: AsyncSession, action: SignupAction, *, client_ip: str, email: str
) -> None:
    """Record one attempt, made now."""
    await session.execute(
        insert(SignupAttempt).values(
            action=action, client_ip=client_ip, email=email, attempted_at=func.now()
        )
    )


async def purge_attempts(session: AsyncSession, *, window_seconds: int) -> int:
    """Delete the attempts that have left the window; how many."""
    result = await session.execute(
        delete(SignupAttempt).where(SignupAttempt.attempted_at < _window_start(window_seconds))
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
