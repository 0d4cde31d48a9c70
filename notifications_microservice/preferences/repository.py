"""SQL of the preferences domain: the rows of `notification_preferences`."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from notifications_microservice.models import NotificationPreference


async def for_user(session: AsyncSession, user_id: str) -> Sequence[NotificationPreference]:
    """The user's stored preferences (event types they never changed have no row)."""
    return (
        await session.scalars(
            select(NotificationPreference).where(NotificationPreference.user_id == user_id)
        )
    ).all()


_FOR_EVENT = select(
    NotificationPreference.email, NotificationPreference.push, NotificationPreference.webhook
).where(
    NotificationPreference.user_id == bindparam("user_id"),
    NotificationPreference.event_type == bindparam("event_type"),
)
"""Built once: every event asks it for every user it concerns."""


async def for_event(
    session: AsyncSession, user_id: str, event_type: str
) -> tuple[bool, bool, bool] | None:
    """The user's (email, push, webhook) choice for one event type, if they ever changed it."""
    found = await session.execute(_FOR_EVENT, {"user_id": user_id, "event_type": event_type})
    row = found.one_or_none()
    return None if row is None else (row.email, row.push, row.webhook)


async def save(session: AsyncSession, user_id: str, rows: Sequence[dict[str, object]]) -> None:
    """Write the user's preferences for the event types in `rows` (each a full set)."""
    if not rows:
        return
    statement = insert(NotificationPreference).values([{**row, "user_id": user_id} for row in rows])
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[NotificationPreference.user_id, NotificationPreference.event_type],
            set_={
                "email": statement.excluded.email,
                "push": statement.excluded.push,
                "webhook": statement.excluded.webhook,
                "updated_at": func.now(),
            },
        )
    )
