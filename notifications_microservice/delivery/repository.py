"""SQL of the delivery worker: lease due rows, read what a send needs, record outcomes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from notifications_microservice.delivery.outcomes import AttemptRecord
from notifications_microservice.models import (
    Channel,
    Notification,
    NotificationStatus,
    WebhookAttempt,
    WebhookEndpoint,
)
from notifications_microservice.webhooks.secrets import SealedSecret


@dataclass(frozen=True)
class Claimed:
    """A notification leased by this worker: what sending it needs."""

    id: uuid.UUID
    event_type: str
    channel: str
    user_id: str
    recipient: str | None
    subject: str
    body_text: str
    body_html: str | None
    payload: dict[str, Any]
    attempts: int
    delivered_to: list[str]
    webhook_endpoint_id: uuid.UUID | None
    lease_token: uuid.UUID


@dataclass(frozen=True)
class EndpointSnapshot:
    """A webhook endpoint as it is when its delivery is sent (its secret still sealed)."""

    id: uuid.UUID
    url: str
    sealed_secret: SealedSecret | None
    legacy_secret: str | None
    """The clear secret of a row from before secrets were sealed, until it is sealed."""
    status: str
    disabled_reason: str | None


async def claim_due(
    session: AsyncSession, *, limit: int, lease_seconds: float, token: uuid.UUID
) -> list[Claimed]:
    """Lease up to `limit` due rows that no live lease holds; counts the attempt.

    SKIP LOCKED lets concurrent claims pass each other instead of waiting, and the lease keeps
    a claimed row away from other workers after this transaction commits, while it is sent.
    """
    due = (
        select(Notification.id)
        .where(
            Notification.status == NotificationStatus.PENDING,
            Notification.next_attempt_at <= func.now(),
            or_(Notification.locked_until.is_(None), Notification.locked_until <= func.now()),
            # An email waits until the recipient's address is known.
            or_(Notification.channel != Channel.EMAIL, Notification.recipient.is_not(None)),
        )
        .order_by(Notification.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = await session.execute(
        update(Notification)
        .where(Notification.id.in_(due.scalar_subquery()))
        .values(
            locked_until=func.now() + timedelta(seconds=lease_seconds),
            lease_token=token,
            attempts=Notification.attempts + 1,
            updated_at=func.now(),
        )
        .returning(
            Notification.id,
            Notification.event_type,
            Notification.channel,
            Notification.user_id,
            Notification.recipient,
            Notification.subject,
            Notification.body_text,
            Notification.body_html,
            Notification.payload,
            Notification.attempts,
            Notification.delivered_to,
            Notification.webhook_endpoint_id,
            Notification.lease_token,
        )
    )
    return [Claimed(**row._mapping) for row in rows]


async def endpoint_snapshot(session: AsyncSession, endpoint_id: uuid.UUID) -> EndpointSnapshot:
    """The endpoint a webhook delivery goes to."""
    endpoint = (
        await session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id))
    ).one()
    sealed = None
    if endpoint.secret_ciphertext is not None:
        assert endpoint.secret_key_id is not None
        assert endpoint.secret_encrypted_key is not None
        assert endpoint.secret_nonce is not None
        sealed = SealedSecret(
            key_id=endpoint.secret_key_id,
            encrypted_key=endpoint.secret_encrypted_key,
            nonce=endpoint.secret_nonce,
            ciphertext=endpoint.secret_ciphertext,
        )
    return EndpointSnapshot(
        id=endpoint.id,
        url=endpoint.url,
        sealed_secret=sealed,
        legacy_secret=endpoint.secret,
        status=endpoint.status,
        disabled_reason=endpoint.disabled_reason,
    )


def _leased(row: Claimed) -> Any:
    return (Notification.id == row.id) & (Notification.lease_token == row.lease_token)


async def mark_sent(
    session: AsyncSession, row: Claimed, provider_message_id: str | None, delivered_to: list[str]
) -> bool:
    """Record a sent row, if this worker still holds its lease."""
    return await _finish(
        session,
        row,
        status=NotificationStatus.SENT,
        sent_at=func.now(),
        provider_message_id=provider_message_id,
        delivered_to=delivered_to,
        last_error=None,
    )


async def mark_failed(session: AsyncSession, row: Claimed, reason: str) -> bool:
    """Record a row given up on, if this worker still holds its lease."""
    return await _finish(session, row, status=NotificationStatus.FAILED, last_error=reason)


async def schedule_retry(
    session: AsyncSession, row: Claimed, delay: float, error: str, delivered_to: list[str]
) -> bool:
    """Put a row back, due after `delay` seconds, if this worker still holds its lease."""
    return await _finish(
        session,
        row,
        next_attempt_at=func.now() + timedelta(seconds=delay),
        last_error=error,
        delivered_to=delivered_to,
    )


async def postpone(session: AsyncSession, row: Claimed, delay: float, error: str) -> bool:
    """Put a row back untried, due after `delay` seconds: the attempt does not count."""
    return await _finish(
        session,
        row,
        attempts=Notification.attempts - 1,
        next_attempt_at=func.now() + timedelta(seconds=delay),
        last_error=error,
    )


async def release(session: AsyncSession, row: Claimed, delivered_to: list[str]) -> bool:
    """Give a row back untried: the attempt counted at the claim did not happen."""
    return await _finish(
        session, row, attempts=Notification.attempts - 1, delivered_to=delivered_to
    )


async def _finish(session: AsyncSession, row: Claimed, **values: Any) -> bool:
    result = await session.execute(
        update(Notification)
        .where(_leased(row))
        .values(locked_until=None, lease_token=None, updated_at=func.now(), **values)
        .returning(Notification.id)
    )
    return result.scalar_one_or_none() is not None


async def log_attempt(
    session: AsyncSession, notification_id: uuid.UUID, attempt: int, record: AttemptRecord
) -> None:
    """Append one webhook attempt to the delivery log."""
    session.add(
        WebhookAttempt(
            notification_id=notification_id,
            endpoint_id=record.endpoint_id,
            attempt=attempt,
            url=record.url,
            succeeded=record.succeeded,
            status_code=record.status_code,
            response_body=record.response_body,
            error=record.error,
            duration_ms=record.duration_ms,
        )
    )
    await session.flush()
