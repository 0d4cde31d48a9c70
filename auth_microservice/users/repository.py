"""SQL of the `auth.users` mirror."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import func, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from auth_microservice.models import User


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
