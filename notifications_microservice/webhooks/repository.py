"""SQL of the webhooks domain."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import RowMapping, bindparam, delete, func, insert, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from notifications_microservice.models import (
    Notification,
    NotificationStatus,
    WebhookAttempt,
    WebhookEndpoint,
    WebhookEndpointStatus,
    WebhookRedelivery,
)
from notifications_microservice.webhooks.secrets import SealedSecret


async def add_endpoint(session: AsyncSession, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """Insert an endpoint and read back its defaults."""
    session.add(endpoint)
    await session.flush()
    await session.refresh(endpoint)
    return endpoint


async def count_live_endpoints(session: AsyncSession, user_id: str) -> int:
    """How many endpoints the user has that are not deleted."""
    count = await session.scalar(
        select(func.count())
        .select_from(WebhookEndpoint)
        .where(
            WebhookEndpoint.user_id == user_id,
            WebhookEndpoint.status != WebhookEndpointStatus.DELETED,
        )
    )
    return int(count or 0)


async def get_endpoint(
    session: AsyncSession, user_id: str, endpoint_id: uuid.UUID, *, for_update: bool = False
) -> WebhookEndpoint | None:
    """One of the user's endpoints that is not deleted."""
    query = select(WebhookEndpoint).where(
        WebhookEndpoint.id == endpoint_id,
        WebhookEndpoint.user_id == user_id,
        WebhookEndpoint.status != WebhookEndpointStatus.DELETED,
    )
    if for_update:
        query = query.with_for_update()
    return (await session.scalars(query)).one_or_none()


async def list_endpoints(
    session: AsyncSession, user_id: str, limit: int, after: WebhookEndpoint | None
) -> Sequence[WebhookEndpoint]:
    """Up to `limit` endpoints, newest first, after the cursor endpoint."""
    query = select(WebhookEndpoint).where(
        WebhookEndpoint.user_id == user_id, WebhookEndpoint.status != WebhookEndpointStatus.DELETED
    )
    if after is not None:
        query = query.where(
            tuple_(WebhookEndpoint.created_at, WebhookEndpoint.id) < (after.created_at, after.id)
        )
    query = query.order_by(WebhookEndpoint.created_at.desc(), WebhookEndpoint.id.desc())
    return (await session.scalars(query.limit(limit))).all()


_SUBSCRIBED = (
    select(WebhookEndpoint.id)
    .where(
        WebhookEndpoint.user_id == bindparam("user_id"),
        WebhookEndpoint.status == WebhookEndpointStatus.ENABLED,
        WebhookEndpoint.event_types.contains(bindparam("event_types", type_=JSONB)),
    )
    .order_by(WebhookEndpoint.created_at)
)
"""Built once: every event asks it for every user it concerns."""


async def subscribed_endpoints(
    session: AsyncSession, user_id: str, event_type: str
) -> Sequence[uuid.UUID]:
    """The ids of the user's enabled endpoints that asked for `event_type`, oldest first."""
    found = await session.scalars(_SUBSCRIBED, {"user_id": user_id, "event_types": [event_type]})
    return found.all()


async def set_endpoint_status(
    session: AsyncSession, endpoint_id: uuid.UUID, status: WebhookEndpointStatus, reason: str | None
) -> None:
    """Disable or delete an endpoint."""
    await session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id)
        .values(status=status, disabled_reason=reason, updated_at=func.now())
    )


async def fail_waiting_deliveries(
    session: AsyncSession, endpoint_id: uuid.UUID, reason: str
) -> int:
    """Mark the endpoint's pending messages that no worker holds as failed."""
    result = await session.execute(
        update(Notification)
        .where(
            Notification.webhook_endpoint_id == endpoint_id,
            Notification.status == NotificationStatus.PENDING,
            or_(Notification.locked_until.is_(None), Notification.locked_until <= func.now()),
        )
        .values(
            status=NotificationStatus.FAILED,
            last_error=reason,
            locked_until=None,
            lease_token=None,
            updated_at=func.now(),
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


_DELIVERY_COLUMNS = (
    WebhookAttempt.id,
    WebhookAttempt.notification_id,
    Notification.event_type.label("event"),
    WebhookAttempt.attempt,
    WebhookAttempt.url,
    WebhookAttempt.succeeded,
    WebhookAttempt.status_code,
    WebhookAttempt.response_body,
    WebhookAttempt.error,
    WebhookAttempt.duration_ms,
    WebhookAttempt.attempted_at,
)


async def list_deliveries(
    session: AsyncSession, endpoint_id: uuid.UUID, limit: int, after_id: int | None
) -> Sequence[RowMapping]:
    """Up to `limit` attempts on the endpoint, newest first, older than `after_id`."""
    query = (
        select(*_DELIVERY_COLUMNS)
        .join(Notification, Notification.id == WebhookAttempt.notification_id)
        .where(WebhookAttempt.endpoint_id == endpoint_id)
    )
    if after_id is not None:
        query = query.where(WebhookAttempt.id < after_id)
    query = query.order_by(WebhookAttempt.id.desc()).limit(limit)
    return (await session.execute(query)).mappings().all()


async def get_delivery(
    session: AsyncSession, endpoint_id: uuid.UUID, delivery_id: int
) -> RowMapping | None:
    """One attempt on the endpoint."""
    return (
        (
            await session.execute(
                select(*_DELIVERY_COLUMNS)
                .join(Notification, Notification.id == WebhookAttempt.notification_id)
                .where(WebhookAttempt.endpoint_id == endpoint_id, WebhookAttempt.id == delivery_id)
            )
        )
        .mappings()
        .one_or_none()
    )


async def requeue_message(session: AsyncSession, notification_id: uuid.UUID) -> RowMapping | None:
    """Make a message due now, unless a worker holds it; returns its id and next attempt."""
    return (
        (
            await session.execute(
                update(Notification)
                .where(
                    Notification.id == notification_id,
                    or_(
                        Notification.locked_until.is_(None), Notification.locked_until <= func.now()
                    ),
                )
                .values(
                    status=NotificationStatus.PENDING,
                    next_attempt_at=func.now(),
                    locked_until=None,
                    lease_token=None,
                    updated_at=func.now(),
                )
                .returning(Notification.id, Notification.next_attempt_at)
            )
        )
        .mappings()
        .one_or_none()
    )


async def recent_redeliveries(
    session: AsyncSession, endpoint_id: uuid.UUID, window: timedelta
) -> tuple[datetime, list[datetime]]:
    """The database's now and the endpoint's redelivery times in `window` (older ones deleted)."""
    now: datetime = (await session.execute(select(func.now()))).scalar_one()
    await session.execute(
        delete(WebhookRedelivery).where(
            WebhookRedelivery.endpoint_id == endpoint_id,
            WebhookRedelivery.requested_at <= now - window,
        )
    )
    times = await session.scalars(
        select(WebhookRedelivery.requested_at)
        .where(WebhookRedelivery.endpoint_id == endpoint_id)
        .order_by(WebhookRedelivery.requested_at)
    )
    return now, list(times)


async def add_redelivery(session: AsyncSession, endpoint_id: uuid.UUID) -> None:
    """Record a redelivery request on the endpoint, now."""
    await session.execute(insert(WebhookRedelivery).values(endpoint_id=endpoint_id))


async def legacy_secrets(session: AsyncSession, limit: int) -> list[tuple[uuid.UUID, str]]:
    """Up to `limit` endpoints whose secret is still in clear, with it."""
    rows = await session.execute(
        select(WebhookEndpoint.id, WebhookEndpoint.secret)
        .where(WebhookEndpoint.secret.is_not(None))
        .order_by(WebhookEndpoint.id)
        .limit(limit)
    )
    return [(row.id, row.secret) for row in rows]


async def seal_legacy_secret(
    session: AsyncSession, endpoint_id: uuid.UUID, secret: str, sealed: SealedSecret
) -> int:
    """Store the sealed secret and clear the plain one, if it is still `secret`; 1 or 0."""
    result = await session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.secret == secret)
        .values(
            secret=None,
            secret_key_id=sealed.key_id,
            secret_encrypted_key=sealed.encrypted_key,
            secret_nonce=sealed.nonce,
            secret_ciphertext=sealed.ciphertext,
            updated_at=func.now(),
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
