"""The rules of holds: reserve available money, then post it (capture) or release it."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from micropay_common.db import Database, Refused
from micropay_common.errors import ProblemError
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
    HoldStatus,
)

logger = logging.getLogger("micropay.transactions.holds")

SWEEP_BATCH = 100


async def _reload(session: AsyncSession, hold_id: uuid.UUID) -> HoldRecord:
    hold = await repository.get(session, hold_id)
    if hold is None:
        raise HoldNotFound(f"No hold {hold_id}.")
    return hold


async def create_hold(db: Database, request: HoldCreate, ttl_seconds: int) -> HoldRecord:
    """Reserve the amount on the user's wallet, or return the hold made for this reference.

    Never while the user owes in the currency: money that leaves by refund while the user owes
    would go back to their card and leave the platform's loss standing. One statement
    (`transactions.create_hold`): the wallet's lock, its overdue holds released, debt and funds
    weighed under it.
    """
    try:
        return await repository.create_hold(
            db,
            hold_id=uuid.uuid4(),
            user_id=request.user_id,
            amount=request.amount,
            currency=request.currency,
            reference=request.reference,
            ttl_seconds=ttl_seconds,
        )
    except Refused as refused:
        raise _problem(refused, request.currency, request.reference) from None


def _problem(refused: Refused, currency: str, reference: str = "") -> ProblemError:
    """The problem a refusal of a hold function is answered with."""
    fields = refused.fields
    if refused.kind == "hold_reference_conflict":
        return HoldReferenceConflict(
            f"Reference {reference!r} already names hold {fields['hold_id']} of another user, "
            "amount or currency.",
            hold_id=str(fields["hold_id"]),
        )
    if refused.kind == "no_wallet":
        return InsufficientFunds(
            f"The user has no {currency} wallet.", available=0, currency=currency
        )
    if refused.kind == "wallet_has_debt":
        return WalletHasDebt(
            "The user owes money in this currency; money coming in pays it first, and nothing "
            "can be refunded from the wallet until it is paid.",
            owed=int(fields["owed"]),
            currency=currency,
        )
    if refused.kind == "insufficient_funds":
        return InsufficientFunds(
            "The wallet's available balance does not cover the hold.",
            available=int(fields["available"]),
            currency=currency,
        )
    if refused.kind == "hold_not_active":
        status = str(fields["hold_status"])
        return HoldNotActive(f"The hold is {status}; it cannot be captured.", hold_status=status)
    raise RuntimeError(f"a hold function refused with an unknown kind {refused.kind!r}")


async def get_hold(session: AsyncSession, hold_id: uuid.UUID) -> HoldRecord:
    """A hold by id, or HoldNotFound."""
    return await _reload(session, hold_id)


async def capture(db: Database, hold_id: uuid.UUID) -> HoldRecord:
    """Post the held amount as a refund entry (wallet → refunds account); repeats are no-ops.

    One statement (`transactions.capture_hold`): the accounts locked (wallet and refunds
    account, in id order) before the hold row, an overdue hold expired (and then not captured).
    If the refund was already debited without this hold (its event came first), the
    reservation is released, paying the user's debt first, and nothing is debited twice.
    """
    try:
        captured = await repository.capture(db, hold_id)
    except Refused as refused:
        if refused.kind == "hold_not_found":
            raise HoldNotFound(f"No hold {hold_id}.") from None
        if refused.kind == "insufficient_funds":  # the ledger's own check, as a posting's
            raise InsufficientFunds(
                "The wallet's available balance does not cover this amount.",
                available=int(refused.fields["available"]),
                currency=str(refused.fields["currency"]),
            ) from None
        raise _problem(refused, "") from None
    if captured.onto_existing:
        logger.warning(
            "hold %s captured onto the existing refund %s", hold_id, captured.hold.reference
        )
    return captured.hold


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


async def spend(
    session: AsyncSession, hold_id: uuid.UUID, post: Callable[[], Awaitable[uuid.UUID]]
) -> HoldRecord | None:
    """Spend an active hold's amount with `post` and mark the hold captured by its transaction.

    `post` writes, in this transaction, a posting that debits the hold's wallet by the held
    amount and returns its transaction id; the reservation is lifted just before, so the
    posting weighs the wallet as if the money were never held. The caller has locked the
    wallet (with any other account the posting touches, in one `lock_accounts`). None when the
    hold is no longer active or its time has run out: then nothing is done.
    """
    hold = await repository.get(session, hold_id, lock=True)
    if hold is None:
        raise HoldNotFound(f"No hold {hold_id}.")
    if hold.status != HoldStatus.ACTIVE or hold.expires_at <= datetime.now(UTC):
        return None
    await repository.add_held(session, hold.account_id, -hold.amount)
    transaction_id = await post()
    await repository.resolve(session, hold.id, HoldStatus.CAPTURED, transaction_id)
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
