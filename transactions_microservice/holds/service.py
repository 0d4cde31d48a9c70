"""The rules of holds: reserve available money, then post it (capture) or release it."""

from __future__ import annotations

import logging
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from transactions_microservice.accounts import service as accounts
from transactions_microservice.holds import repository
from transactions_microservice.holds.exceptions import (
    HoldNotActive,
    HoldNotFound,
    HoldReferenceConflict,
)
from transactions_microservice.holds.repository import HoldRecord
from transactions_microservice.holds.schemas import HoldCreate
from transactions_microservice.ledger import service as ledger
from transactions_microservice.ledger.exceptions import InsufficientFunds, WalletHasDebt
from transactions_microservice.models import (
    EntryType,
    HoldStatus,
    LedgerTransactionType,
    SystemAccount,
)

logger = logging.getLogger("micropay.transactions.holds")

SWEEP_BATCH = 100


def _same_request(hold: HoldRecord, request: HoldCreate) -> HoldRecord:
    if (hold.user_id, hold.amount, hold.currency) != (
        request.user_id,
        request.amount,
        request.currency,
    ):
        raise HoldReferenceConflict(
            f"Reference {request.reference!r} already names hold {hold.id} of another user, "
            "amount or currency.",
            hold_id=str(hold.id),
        )
    return hold


async def _reload(session: AsyncSession, hold_id: uuid.UUID) -> HoldRecord:
    hold = await repository.get(session, hold_id)
    if hold is None:
        raise HoldNotFound(f"No hold {hold_id}.")
    return hold


async def create_hold(session: AsyncSession, request: HoldCreate, ttl_seconds: int) -> HoldRecord:
    """Reserve the amount on the user's wallet, or return the hold made for this reference."""
    existing = await repository.get_by_reference(session, request.reference)
    if existing is not None:
        return _same_request(existing, request)
    wallet_id = await accounts.find_wallet(session, request.user_id, request.currency)
    if wallet_id is None:
        raise InsufficientFunds(
            f"The user has no {request.currency} wallet.", available=0, currency=request.currency
        )
    locked = await ledger.lock_accounts(session, [wallet_id])
    wallet = (await ledger.release_overdue_holds(session, locked))[wallet_id]
    # Under the wallet's lock, as a transfer weighs it: a dispute's withdrawal takes this lock
    # too, so what it left owed is seen here. Money that leaves by refund while the user owes
    # would go back to their card and leave the platform's loss standing.
    owed = await accounts.owed(session, request.user_id, request.currency)
    if owed > 0:
        raise WalletHasDebt(
            "The user owes money in this currency; money coming in pays it first, and nothing "
            "can be refunded from the wallet until it is paid.",
            owed=owed,
            currency=request.currency,
        )
    available = wallet.balance - wallet.held
    if available < request.amount:
        raise InsufficientFunds(
            "The wallet's available balance does not cover the hold.",
            available=available,
            currency=request.currency,
        )
    hold_id = uuid.uuid4()
    created = await repository.insert_hold(
        session,
        hold_id=hold_id,
        account_id=wallet_id,
        amount=request.amount,
        currency=request.currency,
        reference=request.reference,
        ttl_seconds=ttl_seconds,
    )
    if not created:
        # A concurrent create with this reference committed first.
        raced = await repository.get_by_reference(session, request.reference)
        if raced is None:
            raise RuntimeError(f"hold reference {request.reference!r} conflicts but is not found")
        return _same_request(raced, request)
    await repository.add_held(session, wallet_id, request.amount)
    return await _reload(session, hold_id)


async def get_hold(session: AsyncSession, hold_id: uuid.UUID) -> HoldRecord:
    """A hold by id, or HoldNotFound."""
    return await _reload(session, hold_id)


async def capture(session: AsyncSession, hold_id: uuid.UUID) -> HoldRecord:
    """Post the held amount as a refund entry (wallet → refunds account); repeats are no-ops."""
    hold = await _reload(session, hold_id)
    if hold.status == HoldStatus.CAPTURED:
        return hold
    if hold.status != HoldStatus.ACTIVE:
        raise HoldNotActive(
            f"The hold is {hold.status}; it cannot be captured.", hold_status=hold.status
        )
    refunds = await accounts.system_account(session, SystemAccount.REFUNDS, hold.currency)
    # Accounts first, then the hold row: the order every path takes (see lock_accounts). An
    # overdue hold expires here, and is then no longer there to capture.
    await ledger.release_overdue_holds(
        session, await ledger.lock_accounts(session, [hold.account_id, refunds])
    )
    hold = await repository.get(session, hold_id, lock=True) or hold
    if hold.status == HoldStatus.CAPTURED:
        return hold
    if hold.status != HoldStatus.ACTIVE:
        raise HoldNotActive(
            f"The hold is {hold.status}; it cannot be captured.", hold_status=hold.status
        )
    await repository.add_held(session, hold.account_id, -hold.amount)
    posted = await ledger.post(
        session,
        type_=LedgerTransactionType.REFUND,
        reference=hold.reference,
        entries=[
            ledger.NewEntry(
                account_id=hold.account_id,
                amount=-hold.amount,
                currency=hold.currency,
                type=EntryType.REFUND,
            ),
            ledger.NewEntry(
                account_id=refunds,
                amount=hold.amount,
                currency=hold.currency,
                type=EntryType.REFUND,
            ),
        ],
    )
    if posted is not None:
        transaction_id = posted.id
    else:
        # The refund was already debited without this hold (its event came first); the
        # reservation is released and nothing is debited twice.
        found = await ledger.transaction_by_reference(
            session, LedgerTransactionType.REFUND, hold.reference
        )
        if found is None:
            raise RuntimeError(f"refund {hold.reference!r} conflicts but is not found")
        transaction_id = found
        logger.warning("hold %s captured onto the existing refund %s", hold.id, hold.reference)
        await _settle_debt(session, hold)
    await repository.resolve(session, hold.id, HoldStatus.CAPTURED, transaction_id)
    return await _reload(session, hold.id)


async def renew(session: AsyncSession, hold_id: uuid.UUID, ttl_seconds: int) -> HoldRecord:
    """Keep an active hold for `ttl_seconds` more (a refund still in flight); 409 if resolved.

    A hold past its expiry that no posting or sweep has released yet still counts in the
    wallet's `held` (the CHECK on `balance - held` has kept covering it), so renewing it
    reserves no money the wallet does not have.
    """
    hold = await _reload(session, hold_id)
    if hold.status != HoldStatus.ACTIVE or not await repository.extend(
        session, hold_id, ttl_seconds
    ):
        current = await _reload(session, hold_id)
        raise HoldNotActive(
            f"The hold is {current.status}; it cannot be renewed.", hold_status=current.status
        )
    return await _reload(session, hold_id)


async def void(session: AsyncSession, hold_id: uuid.UUID) -> HoldRecord:
    """Release the held amount (paying the user's debt first); voiding again changes nothing."""
    hold = await _reload(session, hold_id)
    if hold.status in (HoldStatus.VOIDED, HoldStatus.EXPIRED):
        return hold
    if hold.status == HoldStatus.CAPTURED:
        raise HoldNotActive("The hold is captured; it cannot be voided.", hold_status=hold.status)
    # An overdue hold expires here; voiding it then changes nothing more.
    await ledger.release_overdue_holds(
        session, await ledger.lock_accounts(session, [hold.account_id])
    )
    hold = await repository.get(session, hold_id, lock=True) or hold
    if hold.status in (HoldStatus.VOIDED, HoldStatus.EXPIRED):
        return hold
    if hold.status == HoldStatus.CAPTURED:
        raise HoldNotActive("The hold is captured; it cannot be voided.", hold_status=hold.status)
    await repository.add_held(session, hold.account_id, -hold.amount)
    await repository.resolve(session, hold.id, HoldStatus.VOIDED)
    await _settle_debt(session, hold)
    return await _reload(session, hold.id)


async def _settle_debt(session: AsyncSession, hold: HoldRecord) -> None:
    """What a released hold gave back to its (locked) wallet pays the user's debt first."""
    await ledger.settle_debt_from_holds(
        session,
        hold.account_id,
        [ledger.ReleasedHold(reference=hold.reference, amount=hold.amount)],
    )


async def release_expired_holds(session: AsyncSession) -> int:
    """Expire overdue holds of up to SWEEP_BATCH accounts; returns how many accounts."""
    account_ids = await repository.accounts_with_expired_holds(session, SWEEP_BATCH)
    if account_ids:
        await ledger.release_overdue_holds(
            session, await ledger.lock_accounts(session, account_ids)
        )
    return len(account_ids)
