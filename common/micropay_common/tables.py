"""Tables every service schema has (outbox, inbox, idempotency keys), as in PostgreSQL.sql.

They carry no schema: each service's engine maps them into its own schema
(`schema_translate_map`), so one definition serves all four.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from micropay_common.constraints import check_in

shared_metadata = MetaData()


class OutboxStatus(StrEnum):
    """Where an outbox row stands: waiting to be sent, sent, or given up on."""

    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"
    """OUTBOX_MAX_ATTEMPTS failed; the row stays with its last error for an operator."""


outbox = Table(
    "outbox",
    shared_metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("event_id", UUID(as_uuid=True), nullable=False),
    Column("event_type", Text, nullable=False),
    Column("consumer", Text, nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("status", Text, nullable=False, server_default=text("'pending'")),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("delivered_at", DateTime(timezone=True)),
    check_in("status", OutboxStatus, name="outbox_status_check"),
    CheckConstraint("attempts >= 0"),
    UniqueConstraint("event_id", "consumer", name="outbox_event_consumer_key"),
    Index("outbox_pending_idx", "next_attempt_at", postgresql_where=text("status = 'pending'")),
    Index("outbox_dead_idx", "consumer", postgresql_where=text("status = 'dead'")),
)

inbox = Table(
    "inbox",
    shared_metadata,
    Column("event_id", UUID(as_uuid=True), primary_key=True),
    Column("event_type", Text, nullable=False),
    Column("producer", Text, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

idempotency_keys = Table(
    "idempotency_keys",
    shared_metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("owner", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("method", Text, nullable=False),
    Column("path", Text, nullable=False),
    Column("request_hash", Text, nullable=False),
    Column("response_status", Integer),
    Column("response_body", JSONB),
    Column("response_media_type", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("completed_at", DateTime(timezone=True)),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("length(key) BETWEEN 1 AND 255"),
    UniqueConstraint("owner", "key", name="idempotency_keys_owner_key"),
    Index("idempotency_keys_expires_idx", "expires_at"),
)
