"""The rules of a transfer: one ledger transaction and one event, or nothing."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from sqlalchemy.ext.asyncio import AsyncSession

from micropay_common.events import TransferCompleted
from micropay_common.outbox import publish
from transactions_microservice.accounts import service as accounts
from transactions_microservice.ledger import service as ledger
from transactions_microservice.ledger.exceptions import InsufficientFunds, WalletHasDebt
from transactions_microservice.ledger.service import LockedAccount
from transactions_microservice.limits import service as limits
from transactions_microservice.models import AccountId, EntryType, LedgerTransactionType
from transactions_microservice.settings import TransactionsSettings
from transactions_microservice.transfers.exceptions import (
    RECIPIENT_UNAVAILABLE,
    RecipientUnavailable,
    TransferToSelf,
)
from transactions_microservice.transfers.schemas import TransferCreate, TransferRead


async def create_transfer(
    session: AsyncSession,
    sender_id: str,
    sender_email: str,
    request: TransferCreate,
    *,
    settings: TransactionsSettings,
) -> TransferRead:
    """Move `amount` from the sender's wallet to the recipient's and announce it.

    The sender's funds and limits are weighed before the recipient is looked at, and every
    recipient that cannot receive gets the same refusal after the same work (the one lookup),
    so neither the answer nor its timing tells whether an email has an account. A debt, funds
    and the daily limit are weighed again under the posting's locks, exactly.
    """
    to_email = accounts.normalise_email(request.to_email)
    if to_email == accounts.normalise_email(sender_email):
        raise TransferToSelf("You cannot send money to yourself.")
    limits.check_transfer_amount(settings, request.amount, request.currency)
    day = limits.Day.of()
    parties = await accounts.transfer_parties(
        session,
        sender_id=sender_id,
        recipient_email=to_email,
        currency=request.currency,
        day_start=day.start,
    )
    _refuse_debt(parties.sender_owed, request.currency)
    if parties.sender_wallet is None:
        raise InsufficientFunds(
            f"You have no {request.currency} wallet.", available=0, currency=request.currency
        )
    posted_available = parties.sender_available or 0
    available = limits.spendable(posted_available, 0, parties.sender_unsettled)
    if available < request.amount:
        raise InsufficientFunds(
            "The wallet's available balance does not cover this amount.",
            available=available,
            pending=min(parties.sender_unsettled, max(posted_available, 0)),
            currency=request.currency,
        )
    limits.check_daily_total(
        settings,
        sent_today=parties.sender_sent_today,
        amount=request.amount,
        currency=request.currency,
        day=day,
    )
    recipient_id = parties.recipient_id
    if recipient_id is None:
        raise RecipientUnavailable(RECIPIENT_UNAVAILABLE)
    if recipient_id == sender_id:
        raise TransferToSelf("You cannot send money to yourself.")
    recipient_wallet = parties.recipient_wallet or await accounts.open_wallet(
        session, recipient_id, request.currency
    )
    sender_wallet = parties.sender_wallet

    async def within_limits(locked: Mapping[AccountId, LockedAccount]) -> None:
        # A dispute's withdrawal takes this wallet's lock too: what it left owed is seen here.
        _refuse_debt(await accounts.owed(session, sender_id, request.currency), request.currency)
        await limits.check_transfer_locked(
            session, settings, locked[sender_wallet], amount=request.amount, day=day
        )

    transfer_id = uuid.uuid4()
    posted = await ledger.post(
        session,
        guard=within_limits,
        type_=LedgerTransactionType.TRANSFER,
        reference=str(transfer_id),
        transaction_id=transfer_id,
        description=request.description,
        entries=[
            ledger.NewEntry(
                account_id=parties.sender_wallet,
                amount=-request.amount,
                currency=request.currency,
                type=EntryType.TRANSFER_OUT,
                counterparty_user_id=recipient_id,
            ),
            ledger.NewEntry(
                account_id=recipient_wallet,
                amount=request.amount,
                currency=request.currency,
                type=EntryType.TRANSFER_IN,
                counterparty_user_id=sender_id,
            ),
        ],
    )
    if posted is None:  # a fresh uuid cannot have been posted before
        raise RuntimeError(f"transfer {transfer_id} already exists")
    from_email = parties.sender_email or accounts.normalise_email(sender_email)
    await publish(
        session,
        TransferCompleted(
            transfer_id=str(transfer_id),
            from_user_id=sender_id,
            from_email=from_email,
            to_user_id=recipient_id,
            to_email=to_email,
            amount=request.amount,
            currency=request.currency,
            description=request.description,
        ),
        event_id=transfer_id,
    )
    return TransferRead(
        id=transfer_id,
        amount=request.amount,
        currency=request.currency,
        to_email=to_email,
        description=request.description,
        created_at=posted.created_at,
    )


def _refuse_debt(owed: int, currency: str) -> None:
    """Refuse a transfer out of a wallet whose user owes in its currency."""
    if owed > 0:
        raise WalletHasDebt(
            "You owe money in this currency; money coming in pays it first, and nothing can be "
            "sent until it is paid.",
            owed=owed,
            currency=currency,
        )
