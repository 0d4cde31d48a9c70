"""SQL of money requests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from transactions_microservice.models import MoneyRequestStatus, money_requests, users


@dataclass(frozen=True, kw_only=True)
class MoneyRequestRecord:
    """A money request as stored."""

    id: uuid.UUID
    requester_id: str
    requester_email: str
    payer_email: str
    payer_id: str | None
    amount: int
    currency: str
    note: str | None
    status: str
    transfer_id: uuid.UUID | None
    created_at: datetime
    expires_at: datetime
    resolved_at: datetime | None

    @classmethod
    def of(cls, row: Row[Any]) -> MoneyRequestRecord:
        """The record of a `money_requests` row."""
        return cls(**row._mapping)


async def user_id_by_email(session: AsyncSession, email: str) -> str | None:
    """The user the ledger knows by this (lower-case) email, if any."""
    found: str | None = await session.scalar(select(users.c.user_id).where(users.c.email == email))
    return found


async def insert(
    session: AsyncSession,
    *,
    request_id: uuid.UUID,
    requester_id: str,
    requester_email: str,
    payer_email: str,
    payer_id: str | None,
    amount: int,
    currency: str,
    note: str | None,
    ttl_seconds: int,
) -> MoneyRequestRecord:
    """Write an open request expiring `ttl_seconds` from now."""
    row = (
        await session.execute(
            money_requests.insert()
            .values(
                id=request_id,
                requester_id=requester_id,
                requester_email=requester_email,
                payer_email=payer_email,
                payer_id=payer_id,
                amount=amount,
                currency=currency,
                note=note,
                expires_at=func.now() + func.make_interval(0, 0, 0, 0, 0, 0, ttl_seconds),
            )
            .returning(*money_requests.c)
        )
    ).one()
    return MoneyRequestRecord.of(row)


async def get(
    session: AsyncSession, request_id: uuid.UUID, *, lock: bool = False
) -> MoneyRequestRecord | None:
    """A request by id, locked for this transaction when asked."""
    statement = select(money_requests).where(money_requests.c.id == request_id)
    if lock:
        statement = statement.with_for_update()
    row = (await session.execute(statement)).one_or_none()
    return None if row is None else MoneyRequestRecord.of(row)


async def page(
    session: AsyncSession,
    *,
    role_column: str,
    user_id: str,
    status: str | None,
    limit: int,
    after: MoneyRequestRecord | None,
) -> list[MoneyRequestRecord]:
    """Up to `limit` of the user's requests on one side, newest first, after `after`."""
    statement = select(money_requests).where(money_requests.c[role_column] == user_id)
    if status is not None:
        statement = statement.where(money_requests.c.status == status)
    if after is not None:
        statement = statement.where(
            tuple_(money_requests.c.created_at, money_requests.c.id)
            < tuple_(after.created_at, after.id)
        )
    statement = statement.order_by(
        money_requests.c.created_at.desc(), money_requests.c.id.desc()
    ).limit(limit)
    return [MoneyRequestRecord.of(row) for row in await session.execute(statement)]


async def close(
    session: AsyncSession,
    request_id: uuid.UUID,
    status: MoneyRequestStatus,
    transfer_id: uuid.UUID | None = None,
) -> MoneyRequestRecord:
    """Close an open request (the caller holds its lock) with `status`."""
    row = (
        await session.execute(
            update(money_requests)
            .where(
                money_requests.c.id == request_id,
                money_requests.c.status == MoneyRequestStatus.OPEN,
            )
            .values(status=status, transfer_id=transfer_id, resolved_at=func.now())
            .returning(*money_requests.c)
        )
    ).one()
    return MoneyRequestRecord.of(row)


async def address_waiting(
    session: AsyncSession, email: str, payer_id: str
) -> list[MoneyRequestRecord]:
    """Give the open requests that waited for `email` their payer; returns them."""
    rows = await session.execute(
        update(money_requests)
        .where(
            money_requests.c.payer_email == email,
            money_requests.c.payer_id.is_(None),
            money_requests.c.status == MoneyRequestStatus.OPEN,
        )
        .values(payer_id=payer_id)
        .returning(*money_requests.c)
    )
    return [MoneyRequestRecord.of(row) for row in rows]


async def expire_due(session: AsyncSession, batch: int) -> list[MoneyRequestRecord]:
    """Close up to `batch` open requests past their expiry; a request being paid, declined or
    cancelled right now is skipped (its lock is taken) and looked at on the next pass."""
    due = (
        select(money_requests.c.id)
        .where(
            money_requests.c.status == MoneyRequestStatus.OPEN,
            money_requests.c.expires_at <= func.now(),
        )
        .order_by(money_requests.c.expires_at)
        .limit(batch)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    rows = await session.execute(
        update(money_requests)
        .where(money_requests.c.id.in_(due))
        .values(status=MoneyRequestStatus.EXPIRED, resolved_at=func.now())
        .returning(*money_requests.c)
    )
    return [MoneyRequestRecord.of(row) for row in rows]
