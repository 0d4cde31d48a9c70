"""SQL of invitations."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from transactions_microservice.models import (
    InvitationStatus,
    transfer_invitations,
    users,
)


@dataclass(frozen=True, kw_only=True)
class InvitationRecord:
    """An invitation as stored."""

    id: uuid.UUID
    sender_id: str
    sender_email: str
    to_email: str
    amount: int
    currency: str
    description: str | None
    hold_id: uuid.UUID
    status: str
    recipient_id: str | None
    created_at: datetime
    expires_at: datetime
    resolved_at: datetime | None

    @classmethod
    def of(cls, row: Row[Any]) -> InvitationRecord:
        """The record of a `transfer_invitations` row."""
        return cls(**row._mapping)


async def has_account(session: AsyncSession, email: str) -> bool:
    """Whether the ledger knows a user by this (lower-case) email."""
    found = await session.scalar(select(users.c.user_id).where(users.c.email == email))
    return found is not None


async def insert(
    session: AsyncSession,
    *,
    invitation_id: uuid.UUID,
    sender_id: str,
    sender_email: str,
    to_email: str,
    amount: int,
    currency: str,
    description: str | None,
    hold_id: uuid.UUID,
    ttl_seconds: int,
) -> InvitationRecord:
    """Write a pending invitation expiring `ttl_seconds` from now."""
    row = (
        await session.execute(
            transfer_invitations.insert()
            .values(
                id=invitation_id,
                sender_id=sender_id,
                sender_email=sender_email,
                to_email=to_email,
                amount=amount,
                currency=currency,
                description=description,
                hold_id=hold_id,
                expires_at=func.now() + func.make_interval(0, 0, 0, 0, 0, 0, ttl_seconds),
            )
            .returning(*transfer_invitations.c)
        )
    ).one()
    return InvitationRecord.of(row)


async def get(
    session: AsyncSession, invitation_id: uuid.UUID, *, lock: bool = False
) -> InvitationRecord | None:
    """An invitation by id, locked for this transaction when asked."""
    statement = select(transfer_invitations).where(transfer_invitations.c.id == invitation_id)
    if lock:
        statement = statement.with_for_update()
    row = (await session.execute(statement)).one_or_none()
    return None if row is None else InvitationRecord.of(row)


async def lock_waiting_for(session: AsyncSession, email: str) -> list[InvitationRecord]:
    """The pending, unexpired invitations to `email`, oldest first, locked (a concurrent
    completion, cancel or expiry waits, then finds them no longer pending)."""
    rows = await session.execute(
        select(transfer_invitations)
        .where(
            transfer_invitations.c.to_email == email,
            transfer_invitations.c.status == InvitationStatus.PENDING,
        )
        .order_by(transfer_invitations.c.created_at, transfer_invitations.c.id)
        .with_for_update()
    )
    return [InvitationRecord.of(row) for row in rows]


async def lock_due(session: AsyncSession, batch: int) -> list[InvitationRecord]:
    """Up to `batch` pending invitations past their expiry, locked; one being completed or
    cancelled right now is skipped and looked at again on the next pass."""
    rows = await session.execute(
        select(transfer_invitations)
        .where(
            transfer_invitations.c.status == InvitationStatus.PENDING,
            transfer_invitations.c.expires_at <= func.now(),
        )
        .order_by(transfer_invitations.c.expires_at)
        .limit(batch)
        .with_for_update(skip_locked=True)
    )
    return [InvitationRecord.of(row) for row in rows]


async def close(
    session: AsyncSession,
    invitation_id: uuid.UUID,
    status: InvitationStatus,
    recipient_id: str | None = None,
) -> InvitationRecord:
    """Close a pending invitation (the caller holds its lock) with `status`."""
    row = (
        await session.execute(
            update(transfer_invitations)
            .where(
                transfer_invitations.c.id == invitation_id,
                transfer_invitations.c.status == InvitationStatus.PENDING,
            )
            .values(status=status, recipient_id=recipient_id, resolved_at=func.now())
            .returning(*transfer_invitations.c)
        )
    ).one()
    return InvitationRecord.of(row)
