"""SQL of the notifications domain: users' emails and notification records."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from micropay_common.telemetry import current_traceparent
from notifications_microservice.models import Channel, Notification, NotificationStatus, User

# Built once: building a statement per call costs more CPU than PostgreSQL spends running it.
_users = cast(Table, User.__table__)
_notifications = cast(Table, Notification.__table__)
# Parameters are named apart from the columns, which SQLAlchemy keeps for itself in INSERTs.
_USER_ROW = insert(_users).values(user_id=bindparam("who"), email=bindparam("seen_email"))
# An alias, so the subquery reads the row as it was rather than correlating with the new one.
_earlier = _users.alias("earlier")
_KNOWN_BEFORE = (
    select(_earlier.c.email).where(_earlier.c.user_id == bindparam("who")).scalar_subquery()
)
_LOCK_USER = _USER_ROW.on_conflict_do_update(
    index_elements=[_users.c.user_id],
    set_={
        "email": func.coalesce(_users.c.email, _USER_ROW.excluded.email),
        "updated_at": func.now(),
    },
).returning(_users.c.email, _KNOWN_BEFORE.is_not(None))
_SET_EMAIL = _USER_ROW.on_conflict_do_update(
    index_elements=[_users.c.user_id],
    set_={"email": _USER_ROW.excluded.email, "updated_at": func.now()},
)
_ADDRESS_WAITING = (
    update(_notifications)
    .where(
        _notifications.c.user_id == bindparam("who"),
        _notifications.c.channel == Channel.EMAIL,
        _notifications.c.status == NotificationStatus.PENDING,
        _notifications.c.recipient.is_(None),
    )
    .values(recipient=bindparam("seen_email"), updated_at=func.now())
)
_INSERT_NOTIFICATIONS = insert(_notifications).on_conflict_do_nothing(
    constraint="notifications_event_user_channel_key"
)


async def lock_user(session: AsyncSession, user_id: str) -> str | None:
    """Lock the user's row (creating it if needed) and return the email known for them.

    The row lock makes two events about one user apply one after the other, so a notification
    stored without an email is always seen by the event that brings the email.
    """
    known, _ = await lock_user_noting_email(session, user_id, None)
    return known


async def lock_user_noting_email(
    session: AsyncSession, user_id: str, email: str | None
) -> tuple[str | None, bool]:
    """`lock_user` with an email seen in an event, which fills in an unknown email and never
    replaces a known one; also whether an email was known before.

    "Before" is as of the statement's start: an email recorded meanwhile by a transaction this
    one waited for reads as not known before, which only costs the caller a needless look.
    """
    known, known_before = (
        await session.execute(_LOCK_USER, {"who": user_id, "seen_email": email})
    ).one()
    return known, bool(known_before)


async def set_email(session: AsyncSession, user_id: str, email: str) -> None:
    """Record the email the user registered with (it wins over one learned elsewhere)."""
    await session.execute(_SET_EMAIL, {"who": user_id, "seen_email": email})


async def address_waiting_emails(session: AsyncSession, user_id: str, email: str) -> int:
    """Give the user's emails that waited for an address their recipient; they become due."""
    result = await session.execute(_ADDRESS_WAITING, {"who": user_id, "seen_email": email})
    return int(result.rowcount)  # type: ignore[attr-defined]


async def insert_notifications(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Insert notification records; one that exists already (same event, user, channel,
    endpoint) is left as it is. Each carries the current trace, if any, for its send."""
    if rows:
        traceparent = current_traceparent()
        await session.execute(
            _INSERT_NOTIFICATIONS, [{**row, "traceparent": traceparent} for row in rows]
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
