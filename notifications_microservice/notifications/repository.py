"""SQL of the notifications domain: users' emails and notification records."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from micropay_common.telemetry import current_traceparent
from notifications_microservice.models import Channel, Notification, NotificationStatus, User


async def lock_user(session: AsyncSession, user_id: str) -> str | None:
    """Lock the user's row (creating it if needed) and return the email known for them.

    The row lock makes two events about one user apply one after the other, so a notification
    stored without an email is always seen by the event that brings the email.
    """
    statement = insert(User).values(user_id=user_id, email=None)
    upsert = statement.on_conflict_do_update(
        index_elements=[User.user_id],
        set_={
            "email": func.coalesce(User.email, statement.excluded.email),
            "updated_at": func.now(),
        },
    ).returning(User.email)
    known: str | None = (await session.execute(upsert)).scalar_one()
    return known


async def lock_user_noting_email(
    session: AsyncSession, user_id: str, email: str
) -> tuple[str | None, bool]:
    """`lock_user` with an email seen in an event, which fills in an unknown email and never
    replaces a known one; also whether an email was known before.

    "Before" is as of the statement's start: an email recorded meanwhile by a transaction this
    one waited for reads as not known before, which only costs the caller a needless look.
    """
    # An alias, so the subquery reads the row as it was rather than correlating with the new one.
    earlier = aliased(User)
    before = select(earlier.email).where(earlier.user_id == user_id).scalar_subquery()
    statement = insert(User).values(user_id=user_id, email=email)
    upsert = statement.on_conflict_do_update(
        index_elements=[User.user_id],
        set_={
            "email": func.coalesce(User.email, statement.excluded.email),
            "updated_at": func.now(),
        },
    ).returning(User.email, before.is_not(None))
    known, known_before = (await session.execute(upsert)).one()
    return known, bool(known_before)


async def set_email(session: AsyncSession, user_id: str, email: str) -> None:
    """Record the email the user registered with (it wins over one learned elsewhere)."""
    statement = insert(User).values(user_id=user_id, email=email)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[User.user_id],
            set_={"email": statement.excluded.email, "updated_at": func.now()},
        )
    )


async def address_waiting_emails(session: AsyncSession, user_id: str, email: str) -> int:
    """Give the user's emails that waited for an address their recipient; they become due."""
    result = await session.execute(
        update(Notification)
        .where(
            Notification.user_id == user_id,
            Notification.channel == Channel.EMAIL,
            Notification.status == NotificationStatus.PENDING,
            Notification.recipient.is_(None),
        )
        .values(recipient=email, updated_at=func.now())
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def insert_notifications(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Insert notification records; one that exists already (same event, user, channel,
    endpoint) is left as it is. Each carries the current trace, if any, for its send."""
    traceparent = current_traceparent()
    if traceparent is not None:
        rows = [{**row, "traceparent": traceparent} for row in rows]
    if rows:
        await session.execute(
            insert(Notification)
            .values(list(rows))
            .on_conflict_do_nothing(constraint="notifications_event_user_channel_key")
        )


async def get_for_user(
    session: AsyncSession, user_id: str, notification_id: uuid.UUID
) -> Notification | None:
    """One of the user's notifications."""
    return (
        await session.scalars(
            select(Notification).where(
                Notification.id == notification_id, Notification.user_id == user_id
            )
        )
    ).one_or_none()


async def list_for_user(
    session: AsyncSession,
    user_id: str,
    limit: int,
    after: Notification | None,
    channel: str | None,
    status: str | None,
) -> Sequence[Notification]:
    """Up to `limit` of the user's notifications, newest first, after the cursor."""
    query = select(Notification).where(Notification.user_id == user_id)
    if channel is not None:
        query = query.where(Notification.channel == channel)
    if status is not None:
        query = query.where(Notification.status == status)
    if after is not None:
        query = query.where(
            tuple_(Notification.created_at, Notification.id) < (after.created_at, after.id)
        )
    query = query.order_by(Notification.created_at.desc(), Notification.id.desc()).limit(limit)
    return (await session.scalars(query)).all()
