"""The rules of invitations: money held for an email until it signs up, exactly once."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from micropay_common.events import (
    EventType,
    TransferCompleted,
    TransferInvitationCanceled,
    TransferInvitationExpired,
    TransferInvited,
)
from micropay_common.outbox import publish
from transactions_microservice.accounts import service as accounts
from transactions_microservice.holds import service as holds
from transactions_microservice.holds.schemas import HoldCreate
from transactions_microservice.invitations import repository
from transactions_microservice.invitations.exceptions import (
    InvitationNotFound,
    InvitationNotPending,
)
from transactions_microservice.invitations.repository import InvitationRecord
from transactions_microservice.invitations.schemas import InvitationRead
from transactions_microservice.ledger import service as ledger
from transactions_microservice.limits import service as limits
from transactions_microservice.models import EntryType, InvitationStatus, LedgerTransactionType

logger = logging.getLogger("micropay.transactions.invitations")

SWEEP_BATCH = 100
HOLD_MARGIN_SECONDS = 24 * 3600
"""The hold outlives its invitation by this much: the invitation's own expiry (or its
completion) always resolves it first, even while the sweep is late."""


def read(record: InvitationRecord) -> InvitationRead:
    """The API's view of an invitation."""
    return InvitationRead(
        id=record.id,
        status=InvitationStatus(record.status),
        to_email=record.to_email,
        amount=record.amount,
        currency=record.currency,
        description=record.description,
        created_at=record.created_at,
        expires_at=record.expires_at,
        resolved_at=record.resolved_at,
    )


def _data(record: InvitationRecord) -> dict[str, object]:
    return {
        "invitation_id": str(record.id),
        "from_user_id": record.sender_id,
        "from_email": record.sender_email,
        "to_email": record.to_email,
        "amount": record.amount,
        "currency": record.currency,
        "description": record.description,
        "expires_at": record.expires_at,
    }


def _event_id(record: InvitationRecord, change: EventType) -> uuid.UUID:
    # The invitation's id is its transfer's, and so `transfer.completed`'s event id.
    return uuid.uuid5(record.id, change)


async def has_account(session: AsyncSession, email: str) -> bool:
    """Whether the (normalised) email names a user the ledger knows."""
    return await repository.has_account(session, email)


async def invite(
    session: AsyncSession,
    *,
    sender_id: str,
    sender_email: str,
    to_email: str,
    amount: int,
    currency: str,
    description: str | None,
    ttl_seconds: int,
    daily_limit: int | None,
) -> InvitationRead:
    """Hold the amount on the sender's wallet and wait for `to_email` to sign up.

    The day's transfer limit counts the invitation now, when the money is promised, under the
    wallet's lock (what was sent today plus today's invitations still pending), so invitations
    cannot carry more out of a wallet in a day than transfers can; its completion later is
    never refused. The hold then weighs the sender's debt and available funds under the same
    lock (`transactions.create_hold`) and refuses as it would a refund's hold; the caller words
    that.
    """
    wallet_id = await accounts.find_wallet(session, sender_id, currency)
    if wallet_id is not None and daily_limit is not None:
        await ledger.lock_accounts(session, [wallet_id])
        day = limits.Day.of()
        committed = await limits.sent_today(session, sender_id, currency, day)
        if committed + amount > daily_limit:
            raise limits.daily_limit_exceeded(
                limit=daily_limit,
                remaining=max(daily_limit - committed, 0),
                currency=currency,
                day=day,
            )
    invitation_id = uuid.uuid4()
    hold = await holds.create_hold(
        session,
        HoldCreate(
            user_id=sender_id,
            amount=amount,
            currency=currency,
            reference=f"invitation:{invitation_id}",
        ),
        ttl_seconds=ttl_seconds + HOLD_MARGIN_SECONDS,
    )
    record = await repository.insert(
        session,
        invitation_id=invitation_id,
        sender_id=sender_id,
        sender_email=sender_email,
        to_email=to_email,
        amount=amount,
        currency=currency,
        description=description,
        hold_id=hold.id,
        ttl_seconds=ttl_seconds,
    )
    await publish(
        session,
        TransferInvited(**_data(record)),
        event_id=_event_id(record, TransferInvited.event_type),
    )
    return read(record)


async def complete_for(session: AsyncSession, user_id: str, email: str) -> int:
    """A newly registered email receives the transfers that waited for it; how many.

    Each invitation's row is locked and must still be pending and unexpired: a concurrent
    registration, cancel or expiry waits for the lock and then finds it closed, so each
    completes once (and the ledger's unique (type, reference) stands behind that).
    """
    completed = 0
    for record in await repository.lock_waiting_for(session, accounts.normalise_email(email)):
        if record.expires_at <= datetime.now(UTC) or record.sender_id == user_id:
            continue  # the sweep expires it and releases the money
        if await _complete(session, record, user_id):
            completed += 1
    return completed


async def _complete(session: AsyncSession, record: InvitationRecord, recipient_id: str) -> bool:
    hold = await holds.get_hold(session, record.hold_id)
    recipient_wallet = await accounts.open_wallet(session, recipient_id, record.currency)
    # Both wallets in id order before the hold's row, as every posting locks them.
    await ledger.lock_accounts(session, [hold.account_id, recipient_wallet])

    async def post() -> uuid.UUID:
        posted = await ledger.post(
            session,
            type_=LedgerTransactionType.TRANSFER,
            reference=str(record.id),
            transaction_id=record.id,
            description=record.description,
            entries=[
                ledger.NewEntry(
                    account_id=hold.account_id,
                    amount=-record.amount,
                    currency=record.currency,
                    type=EntryType.TRANSFER_OUT,
                    counterparty_user_id=recipient_id,
                ),
                ledger.NewEntry(
                    account_id=recipient_wallet,
                    amount=record.amount,
                    currency=record.currency,
                    type=EntryType.TRANSFER_IN,
                    counterparty_user_id=record.sender_id,
                ),
            ],
        )
        if posted is None:
            raise RuntimeError(f"invitation {record.id} was posted before")
        return posted.id

    if await holds.spend(session, record.hold_id, post) is None:
        logger.warning("invitation %s found its hold no longer active", record.id)
        return False
    await repository.close(session, record.id, InvitationStatus.COMPLETED, recipient_id)
    await publish(
        session,
        TransferCompleted(
            transfer_id=str(record.id),
            from_user_id=record.sender_id,
            from_email=record.sender_email,
            to_user_id=recipient_id,
            to_email=record.to_email,
            amount=record.amount,
            currency=record.currency,
            description=record.description,
        ),
        event_id=record.id,
    )
    return True


async def cancel(session: AsyncSession, sender_id: str, invitation_id: uuid.UUID) -> InvitationRead:
    """The sender takes a pending transfer back: the hold is released, the sender told."""
    record = await repository.get(session, invitation_id, lock=True)
    if record is None or record.sender_id != sender_id:
        raise InvitationNotFound(f"You have no pending transfer {invitation_id}.")
    if record.status != InvitationStatus.PENDING:
        raise InvitationNotPending(
            f"The transfer is {record.status}.", transfer_status=record.status
        )
    await holds.void(session, record.hold_id)
    canceled = await repository.close(session, record.id, InvitationStatus.CANCELED)
    await publish(
        session,
        TransferInvitationCanceled(**_data(canceled)),
        event_id=_event_id(canceled, TransferInvitationCanceled.event_type),
    )
    return read(canceled)


async def expire_overdue(session: AsyncSession) -> int:
    """Close up to SWEEP_BATCH pending invitations past their expiry, releasing their holds."""
    due = await repository.lock_due(session, SWEEP_BATCH)
    for record in due:
        await holds.void(session, record.hold_id)
        expired = await repository.close(session, record.id, InvitationStatus.EXPIRED)
        await publish(
            session,
            TransferInvitationExpired(**_data(expired)),
            event_id=_event_id(expired, TransferInvitationExpired.event_type),
        )
    return len(due)
