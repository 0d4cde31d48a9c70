"""Tables of the `notifications` schema, as in PostgreSQL.sql (tests/test_schema.py checks)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from micropay_common.constraints import check_in
from micropay_common.services import SERVICES, ServiceName

SCHEMA = SERVICES[ServiceName.NOTIFICATIONS].schema
NOTIFICATIONS_DUE_CHANNEL = "micropay_notifications_due"
"""Announced by a commit that made notifications due; it wakes the delivery workers."""


class Channel(StrEnum):
    """How a notification reaches its user."""

    EMAIL = "email"
    PUSH = "push"
    WEBHOOK = "webhook"
    """One of the user's webhook endpoints (one notification per endpoint)."""


class NotificationStatus(StrEnum):
    """Where a notification stands."""

    PENDING = "pending"
    """Due (again) at `next_attempt_at`."""
    SENT = "sent"
    FAILED = "failed"
    """Given up on; `last_error` says why."""
    SKIPPED = "skipped"
    """Never sent: the user had turned this channel off for the event type when it happened."""


class DevicePlatform(StrEnum):
    """The push service a device's token belongs to."""

    APNS = "apns"
    APNS_SANDBOX = "apns_sandbox"
    """APNs' development environment."""
    FCM = "fcm"
    """Firebase Cloud Messaging."""


class WebhookEndpointStatus(StrEnum):
    """Whether an endpoint receives deliveries."""

    ENABLED = "enabled"
    DISABLED = "disabled"
    """It answered 410 Gone; nothing is sent to it any more."""
    DELETED = "deleted"
    """Its owner deleted it; the row stays for the notifications and attempts that name it."""


class Base(DeclarativeBase):
    """Declarative base of this service's tables."""


class User(Base):
    """Who is who: the email a user registered with, learned from events.

    A row may exist before its email is known (a payment event came first); the row lock it
    takes orders event handlers of one user, so no notification waits for an email forever.
    """

    __tablename__ = "users"
    __table_args__ = {"schema": SCHEMA}

    user_id: Mapped[str] = mapped_column(Text, primary_key=True)
    email: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


# A row holds its signing secret sealed (all four columns) or, written before revision 0004
# and not yet sealed by the start-up job, in clear: never both, never neither.
SEALED_OR_LEGACY = (
    "(secret IS NULL AND secret_key_id IS NOT NULL AND secret_encrypted_key IS NOT NULL"
    " AND secret_nonce IS NOT NULL AND secret_ciphertext IS NOT NULL)"
    " OR (secret IS NOT NULL AND secret_key_id IS NULL AND secret_encrypted_key IS NULL"
    " AND secret_nonce IS NULL AND secret_ciphertext IS NULL)"
)


class WebhookEndpoint(Base):
    """A URL of the user's own systems that receives signed events.

    Its signing secret is sealed (envelope encryption with KMS, `webhooks/secrets.py`): the
    data key encrypted by KMS, the nonce and the AES-GCM ciphertext, and the KMS key that
    encrypted the data key. `secret` is the clear secret of a row written before that, until
    the start-up job seals it (docs/migrations.md, revision 0004).
    """

    __tablename__ = "webhook_endpoints"
    __table_args__ = (
        check_in("status", WebhookEndpointStatus, name="webhook_endpoints_status_check"),
        CheckConstraint(
            "jsonb_typeof(event_types) = 'array'", name="webhook_endpoints_events_check"
        ),
        CheckConstraint(SEALED_OR_LEGACY, name="webhook_endpoints_secret_check"),
        Index("webhook_endpoints_user_idx", "user_id", "created_at"),
        Index(
            "webhook_endpoints_legacy_secret_idx",
            "id",
            postgresql_where=text("secret IS NOT NULL"),
        ),
        {"schema": SCHEMA},
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    user_id: Mapped[str] = mapped_column(Text, nullable=False)
    url: Mapped[str] = mapped_column(Text, nullable=False)
    event_types: Mapped[list[str]] = mapped_column(JSONB, nullable=False)
    secret: Mapped[str | None] = mapped_column(Text)
    secret_key_id: Mapped[str | None] = mapped_column(Text)
    secret_encrypted_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    secret_nonce: Mapped[bytes | None] = mapped_column(LargeBinary)
    secret_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'enabled'"))
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class Notification(Base):
    """One message to one user on one channel (and, for webhooks, one endpoint).

    The delivery worker leases a due row (`locked_until`, `lease_token`), sends it outside the
    claiming transaction and records the outcome only while it still holds the lease.
    """

    __tablename__ = "notifications"
    __table_args__ = (
        check_in("channel", Channel, name="notifications_channel_check"),
        check_in("status", NotificationStatus, name="notifications_status_check"),
        CheckConstraint(
            "(channel = 'webhook') = (webhook_endpoint_id IS NOT NULL)",
            name="notifications_webhook_endpoint_check",
        ),
        CheckConstraint("attempts >= 0", name="notifications_attempts_check"),
        UniqueConstraint(
            "event_id",
            "user_id",
            "channel",
            "webhook_endpoint_id",
            name="notifications_event_user_channel_key",
            postgresql_nulls_not_distinct=True,
        ),
        Index("notifications_user_idx", "user_id", "created_at", "id"),
        Index(
            "notifications_due_idx",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
        Index(
            "notifications_awaiting_email_idx",
            "user_id",
            postgresql_where=text("status = 'pending' AND channel = 'email' AND recipient IS NULL"),
        ),
        Index(
            "notifications_webhook_endpoint_idx",
            "webhook_endpoint_id",
            postgresql_where=text("webhook_endpoint_id IS NOT NULL"),
        ),
        {"schema": SCHEMA},
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    event_type: Mapped[str] = mapped_column(Text, nullable=False)
    user_id: Mapped[str] = mapped_column(Text, nullable=False)
    channel: Mapped[str] = mapped_column(Text, nullable=False)
    webhook_endpoint_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey(f"{SCHEMA}.webhook_endpoints.id")
    )
    recipient: Mapped[str | None] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(Text, nullable=False)
    body_text: Mapped[str] = mapped_column(Text, nullable=False)
    body_html: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'pending'"))
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    next_attempt_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_token: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    delivered_to: Mapped[list[str]] = mapped_column(
        JSONB, nullable=False, server_default=text("'[]'::jsonb")
    )
    provider_message_id: Mapped[str | None] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    traceparent: Mapped[str | None] = mapped_column(Text)
    """W3C trace context of the event's handling (when traced): the send joins that trace."""


class Device(Base):
    """A push endpoint (SNS platform endpoint) of one of the user's devices."""

    __tablename__ = "devices"
    __table_args__ = (
        check_in("platform", DevicePlatform, name="devices_platform_check"),
        UniqueConstraint("platform", "token", name="devices_platform_token_key"),
        Index("devices_user_idx", "user_id"),
        {"schema": SCHEMA},
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    user_id: Mapped[str] = mapped_column(Text, nullable=False)
    platform: Mapped[str] = mapped_column(Text, nullable=False)
    token: Mapped[str] = mapped_column(Text, nullable=False)
    endpoint_arn: Mapped[str] = mapped_column(Text, nullable=False)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("true"))
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class WebhookAttempt(Base):
    """One HTTP attempt to deliver a webhook notification: what came back and how long it took."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (
        Index("webhook_attempts_endpoint_idx", "endpoint_id", "id"),
        Index("webhook_attempts_notification_idx", "notification_id"),
        {"schema": SCHEMA},
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    notification_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey(f"{SCHEMA}.notifications.id"), nullable=False
    )
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey(f"{SCHEMA}.webhook_endpoints.id"), nullable=False
    )
    attempt: Mapped[int] = mapped_column(Integer, nullable=False)
    url: Mapped[str] = mapped_column(Text, nullable=False)
    succeeded: Mapped[bool] = mapped_column(Boolean, nullable=False)
    status_code: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer, nullable=False)
    attempted_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class WebhookRedelivery(Base):
    """A manual redelivery asked for on an endpoint; recent ones count against its rate limit."""

    __tablename__ = "webhook_redeliveries"
    __table_args__ = (
        Index("webhook_redeliveries_endpoint_idx", "endpoint_id", "requested_at"),
        {"schema": SCHEMA},
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey(f"{SCHEMA}.webhook_endpoints.id"), nullable=False
    )
    requested_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class NotificationPreference(Base):
    """The channels a user turned on or off for one event type.

    No row means every channel is on; a row is written the first time the user changes a
    channel of that event type. Read when an event becomes notifications, never at delivery.
    """

    __tablename__ = "notification_preferences"
    __table_args__ = {"schema": SCHEMA}

    user_id: Mapped[str] = mapped_column(Text, primary_key=True)
    event_type: Mapped[str] = mapped_column(Text, primary_key=True)
    email: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("true"))
    push: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("true"))
    webhook: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("true"))
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
