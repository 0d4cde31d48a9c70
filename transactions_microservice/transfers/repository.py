"""SQL of transfers: the whole transfer is one call of `transactions.transfer`."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ARRAY, BigInteger, DateTime, Integer, Text, bindparam, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from micropay_common.db import Database, Direct, Statement, refusals
from micropay_common.idempotency import IdempotencyKeyInUse

# One round trip (migration 0011 says why it is a function, and what it does in which order).
_TRANSFER = (
    text(
        "SELECT transactions.transfer(:sender_id, :sender_email, :to_email, :amount, :currency, "
        ":description, :daily_limit, :day_start, :transfer_id, :response, :event, :consumers, "
        ":key, :method, :path, :fingerprint, :ttl_hours, :lock_timeout) AS outcome"
    )
    .bindparams(
        bindparam("sender_id", type_=Text),
        bindparam("sender_email", type_=Text),
        bindparam("to_email", type_=Text),
        bindparam("amount", type_=BigInteger),
        bindparam("currency", type_=Text),
        bindparam("description", type_=Text),
        bindparam("daily_limit", type_=BigInteger),
        bindparam("day_start", type_=DateTime(timezone=True)),
        bindparam("transfer_id", type_=UUID(as_uuid=True)),
        bindparam("response", type_=JSONB),
        bindparam("event", type_=JSONB),
        bindparam("consumers", type_=ARRAY(Text)),
        bindparam("key", type_=Text),
        bindparam("method", type_=Text),
        bindparam("path", type_=Text),
        bindparam("fingerprint", type_=Text),
        bindparam("ttl_hours", type_=Integer),
        bindparam("lock_timeout", type_=Text),
    )
    .columns(outcome=JSONB)
)

_LOCK_NOT_AVAILABLE = "55P03"

_NO_CLAIM: dict[str, Any] = dict.fromkeys(
    ("key", "method", "path", "fingerprint", "ttl_hours", "lock_timeout")
)


@dataclass(frozen=True, kw_only=True)
class TransferCall:
    """What `transactions.transfer` is given."""

    transfer_id: uuid.UUID
    sender_id: str
    sender_email: str
    to_email: str
    amount: int
    currency: str
    description: str | None
    daily_limit: int | None
    day_start: datetime
    response: dict[str, Any]
    """The answer without `created_at`, which the function adds (the posting's time)."""
    event: dict[str, Any]
    """The outbox payload, but `to_user_id` and `from_email`, which the function fills in."""
    consumers: list[str]


_TRANSFER_SQL = Statement.of(_TRANSFER)

_CLAIM = (
    text(
        "SELECT transactions.claim_idempotency_key(:owner, :key, :method, :path, :fingerprint, "
        ":ttl_hours, :lock_timeout) AS outcome"
    )
    .bindparams(
        bindparam("owner", type_=Text),
        bindparam("ttl_hours", type_=Integer),
    )
    .columns(outcome=JSONB)
)


async def claim_key(session: AsyncSession, owner: str, claim: dict[str, Any]) -> dict[str, Any]:
    """Claim the Idempotency-Key in the session's transaction: `{"id"}` of the key row, or what
    was found instead (for `claimed`)."""
    try:
        outcome: dict[str, Any] = (
            await session.execute(_CLAIM, {"owner": owner, **claim})
        ).scalar_one()
    except DBAPIError as error:
        if getattr(error.orig, "sqlstate", None) == _LOCK_NOT_AVAILABLE:
            raise IdempotencyKeyInUse(
                "Another request with this Idempotency-Key is still being processed; retry shortly."
            ) from error
        raise
    return outcome


async def transfer(
    db: Direct | Database, call: TransferCall, claim: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Run the transfer: `{"status", "body"}`, or what the idempotency claim found instead;
    Refused when a rule refuses it (and then nothing was written)."""
    values = {
        "transfer_id": call.transfer_id,
        "sender_id": call.sender_id,
        "sender_email": call.sender_email,
        "to_email": call.to_email,
        "amount": call.amount,
        "currency": call.currency,
        "description": call.description,
        "daily_limit": call.daily_limit,
        "day_start": call.day_start,
        "response": call.response,
        "event": call.event,
        "consumers": call.consumers,
        **(claim or _NO_CLAIM),
    }
    with refusals():
        if isinstance(db, Direct):
            # asyncpg takes and gives jsonb as its text.
            values["response"] = json.dumps(call.response)
            values["event"] = json.dumps(call.event)
            outcome: dict[str, Any] = json.loads(await db.fetchval(_TRANSFER_SQL, **values))
            return outcome
        result = await db.execute(_TRANSFER, values)
    outcome = result.scalar_one()
    return outcome
