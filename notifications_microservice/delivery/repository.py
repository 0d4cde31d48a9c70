"""SQL of the delivery worker: lease due rows, read what a send needs, record outcomes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, text, update
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
    next_attempt_at: datetime
    created_at: datetime
    traceparent: str | None = None
    """The trace of the event that caused it (when traced); its send joins it."""


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
        # Oldest first, so a backlog drains in the order it built up; by the due index's own
        # column alone, so the scan stops after `limit` rows instead of sorting the backlog.
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
            Notification.next_attempt_at,
            Notification.created_at,
            Notification.traceparent,
        )
    )
    # RETURNING keeps no order: sort again, so the oldest rows are sent first.
    ordered = sorted(rows, key=lambda row: (row.next_attempt_at, row.created_at))
    return [Claimed(**row._mapping) for row in ordered]


def _snapshot(endpoint: WebhookEndpoint) -> EndpointSnapshot:
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


@dataclass(frozen=True)
class OutcomeRow:
    """What one send changes on its row; None leaves a column as it is."""

    row: Claimed
    status: str = NotificationStatus.PENDING
    attempts_delta: int = 0
    """-1 gives back the attempt counted at the claim (nothing was tried, or a rate answer)."""
    delay: float | None = None
    """Due again after this many seconds."""
    last_error: str | None = None
    clear_error: bool = False
    delivered_to: list[str] | None = None
    provider_message_id: str | None = None


# Every outcome of a batch in one statement: the arrays are the batch, one element per row. A row
# is changed only while this worker's lease token is still on it.
_RECORD_OUTCOMES = text(
    """
    UPDATE notifications.notifications AS n SET
        status = v.status,
        attempts = n.attempts + v.attempts_delta,
        next_attempt_at = CASE WHEN v.delay IS NULL THEN n.next_attempt_at
                               ELSE now() + make_interval(secs => v.delay) END,
        last_error = CASE WHEN v.clear_error THEN NULL
                          ELSE coalesce(v.last_error, n.last_error) END,
        delivered_to = coalesce(v.delivered_to::jsonb, n.delivered_to),
        provider_message_id = coalesce(v.provider_message_id, n.provider_message_id),
        sent_at = CASE WHEN v.status = 'sent' THEN now() ELSE n.sent_at END,
        locked_until = NULL,
        lease_token = NULL,
        updated_at = now()
    FROM unnest(
        CAST(:ids AS uuid[]), CAST(:tokens AS uuid[]), CAST(:statuses AS text[]),
        CAST(:attempts_deltas AS int[]), CAST(:delays AS float8[]), CAST(:errors AS text[]),
        CAST(:clear_errors AS bool[]), CAST(:delivered AS text[]),
        CAST(:provider_ids AS text[])
    ) AS v(id, token, status, attempts_delta, delay, last_error, clear_error, delivered_to,
           provider_message_id)
    WHERE n.id = v.id AND n.lease_token = v.token
    RETURNING n.id
    """
)


async def record_outcomes(session: AsyncSession, outcomes: Sequence[OutcomeRow]) -> set[uuid.UUID]:
    """Record a batch of outcomes in one statement; returns the ids whose lease was still held."""
    if not outcomes:
        return set()
    rows = await session.execute(
        _RECORD_OUTCOMES,
        {
            "ids": [o.row.id for o in outcomes],
            "tokens": [o.row.lease_token for o in outcomes],
            "statuses": [str(o.status) for o in outcomes],
            "attempts_deltas": [o.attempts_delta for o in outcomes],
            "delays": [o.delay for o in outcomes],
            "errors": [o.last_error for o in outcomes],
            "clear_errors": [o.clear_error for o in outcomes],
            "delivered": [
                None if o.delivered_to is None else json.dumps(o.delivered_to) for o in outcomes
            ],
            "provider_ids": [o.provider_message_id for o in outcomes],
        },
    )
    return {row[0] for row in rows}


async def endpoint_snapshots(
    session: AsyncSession, endpoint_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, EndpointSnapshot]:
    """The endpoints a batch of webhook deliveries goes to, in one query."""
    endpoints = await session.scalars(
        select(WebhookEndpoint).where(WebhookEndpoint.id.in_(list(endpoint_ids)))
    )
    return {endpoint.id: _snapshot(endpoint) for endpoint in endpoints}


async def log_attempts(
    session: AsyncSession, attempts: Sequence[tuple[uuid.UUID, int, AttemptRecord]]
) -> None:
    """Append a batch's webhook attempts to the delivery log (one INSERT)."""
    session.add_all(
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
        for notification_id, attempt, record in attempts
    )
    await session.flush()


@dataclass(frozen=True)
class ChannelBacklog:
    """Pending rows of one channel and how far behind they are."""

    pending: int
    oldest_pending_age: float
    """Seconds since the oldest pending row was created (retries and waiting emails included)."""
    oldest_due_age: float
    """Seconds the oldest row a worker could send now has been due: how far behind they are."""


_BACKLOG = text(
    """
    SELECT channel,
           count(*) AS pending,
           extract(epoch FROM now() - min(created_at))::float8 AS oldest_pending_age,
           coalesce(extract(epoch FROM now() - min(next_attempt_at) FILTER (
               WHERE next_attempt_at <= now() AND (channel <> 'email' OR recipient IS NOT NULL)
           )), 0)::float8 AS oldest_due_age
    FROM notifications.notifications
    WHERE status = 'pending'
    GROUP BY channel
    """
)


async def backlog(session: AsyncSession) -> dict[str, ChannelBacklog]:
    """The pending rows of each channel that has any."""
    rows = await session.execute(_BACKLOG)
    return {
        row.channel: ChannelBacklog(
            int(row.pending), float(row.oldest_pending_age), float(row.oldest_due_age)
        )
        for row in rows
    }
