"""Rules of notifications: which records an event becomes, and the caller's list.

Each event becomes, for every user it concerns, one email, one push and one webhook message
per subscribed endpoint, rendered now and written in the event's inbox transaction; the
user's preferences as they stand then decide which of them are `pending` and which `skipped`
(never sent, whatever the preferences become later); the
delivery worker sends them once that transaction commits (the table's own trigger announces
new pending rows on `NOTIFICATIONS_DUE_CHANNEL`, which wakes the workers, revision 0021). An
email whose address is not known yet waits (recipient NULL) until the event that brings the
address fills it in.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from micropay_common.pagination import InvalidCursor
from micropay_common.wakeup import announce
from notifications_microservice.models import (
    NOTIFICATIONS_DUE_CHANNEL,
    Channel,
    Notification,
    NotificationStatus,
)
from notifications_microservice.notifications import repository
from notifications_microservice.preferences import service as preferences
from notifications_microservice.rendering import render_message
from notifications_microservice.webhooks import service as webhooks


@dataclass(frozen=True)
class Occurrence:
    """The event a notification is about."""

    event_id: uuid.UUID
    event_type: str
    occurred_at: datetime


async def remember_email(session: AsyncSession, user_id: str, email: str) -> None:
    """Record the user's registered email; emails that waited for it become due."""
    await repository.set_email(session, user_id, email)
    if await repository.address_waiting_emails(session, user_id, email):
        await announce(session, NOTIFICATIONS_DUE_CHANNEL)


async def learn_email(session: AsyncSession, user_id: str, email: str) -> str | None:
    """Lock the user and note an email seen in an event, if none is known yet."""
    known, known_before = await repository.lock_user_noting_email(session, user_id, email)
    # Emails wait for an address only while none is known, and whoever first records one
    # addresses them in the same transaction: with an address known before, none can wait.
    if (
        known is not None
        and not known_before
        and await repository.address_waiting_emails(session, user_id, known)
    ):
        await announce(session, NOTIFICATIONS_DUE_CHANNEL)
    return known


async def lock_user(session: AsyncSession, user_id: str) -> str | None:
    """Lock the user's row for this transaction; their email, if known."""
    return await repository.lock_user(session, user_id)


async def notify(
    session: AsyncSession,
    occurrence: Occurrence,
    *,
    user_id: str,
    email: str | None,
    kind: str,
    context: Mapping[str, Any],
    webhook_data: Mapping[str, Any],
) -> list[uuid.UUID]:
    """Write the user's email, push and webhook records for one event; returns their ids.

    A channel the user turned off for the event type gets its records all the same, `skipped`.
    """
    message = render_message(kind, {**context, "event_id": str(occurrence.event_id)})
    common = {
        "event_id": occurrence.event_id,
        "event_type": occurrence.event_type,
        "user_id": user_id,
        "subject": message.subject,
        "recipient": None,
        "body_html": None,
        "webhook_endpoint_id": None,
    }
    webhook_body = {
        "type": occurrence.event_type,
        "timestamp": occurrence.occurred_at.isoformat(),
        "data": dict(webhook_data),
    }
    rows: list[dict[str, Any]] = [
        {
            **common,
            "id": uuid.uuid4(),
            "channel": Channel.EMAIL,
            "recipient": email,
            "body_text": message.text,
            "body_html": message.html,
            "payload": {},
        },
        {
            **common,
            "id": uuid.uuid4(),
            "channel": Channel.PUSH,
            "body_text": message.push,
            "payload": {"title": message.subject, "body": message.push, **webhook_body},
        },
    ]
    for endpoint_id in await webhooks.subscribed_endpoints(session, user_id, occurrence.event_type):
        rows.append(
            {
                **common,
                "id": uuid.uuid4(),
                "channel": Channel.WEBHOOK,
                "webhook_endpoint_id": endpoint_id,
                "body_text": message.push,
                "payload": webhook_body,
            }
        )
    channels = await preferences.channels_for(session, user_id, occurrence.event_type)
    for row in rows:
        on = row["channel"] in channels
        row["status"] = NotificationStatus.PENDING if on else NotificationStatus.SKIPPED
    await repository.insert_notifications(session, rows)
    return [row["id"] for row in rows]


ADDRESS_PREFIX = "address:"
"""The `user_id` of messages to an address that has no account yet (an invitation): no user's
list shows them, and the per-recipient caps count them per address."""


async def notify_address(
    session: AsyncSession,
    occurrence: Occurrence,
    *,
    email: str,
    kind: str,
    context: Mapping[str, Any],
) -> uuid.UUID:
    """Write one email to an address that has no account (no push, no webhook: nobody has
    devices or endpoints there); returns its id."""
    message = render_message(kind, {**context, "event_id": str(occurrence.event_id)})
    notification_id = uuid.uuid4()
    row: dict[str, Any] = {
        "id": notification_id,
        "event_id": occurrence.event_id,
        "event_type": occurrence.event_type,
        "user_id": f"{ADDRESS_PREFIX}{email.strip().lower()}",
        "channel": Channel.EMAIL,
        "recipient": email,
        "subject": message.subject,
        "body_text": message.text,
        "body_html": message.html,
        "webhook_endpoint_id": None,
        "payload": {},
    }
    await repository.insert_notifications(session, [row])
    return notification_id


async def list_notifications(
    session: AsyncSession,
    user_id: str,
    *,
    limit: int,
    starting_after: uuid.UUID | None,
    channel: str | None,
    status: str | None,
) -> Sequence[Notification]:
    """A page (plus one) of the user's notifications, newest first."""
    after = None
    if starting_after is not None:
        after = await repository.get_for_user(session, user_id, starting_after)
        if after is None:
            raise InvalidCursor(f"starting_after: you have no notification {starting_after}.")
    return await repository.list_for_user(session, user_id, limit + 1, after, channel, status)
