"""Rules for card money: credit top-ups once, debit refunds and disputes once, never overdraw a
wallet."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from transactions_microservice.accounts import service as accounts
from transactions_microservice.holds import service as holds_service
from transactions_microservice.holds.exceptions import HoldNotActive, HoldNotFound
from transactions_microservice.ledger import service as ledger
from transactions_microservice.limits import service as limits
from transactions_microservice.models import (
    AccountId,
    EntryType,
    HoldStatus,
    LedgerTransactionType,
    SystemAccount,
)

logger = logging.getLogger("micropay.transactions.funding")


@dataclass(frozen=True)
class RefundOutcome:
    """What a refund did to the ledger."""

    how: Literal["hold_captured", "debited", "already_applied", "hold_released", "reversed"]
    debited: int = 0
    shortfall: int = 0


async def credit_top_up(
    session: AsyncSession,
    *,
    payment_id: str,
    user_id: str,
    amount: int,
    currency: str,
    three_d_secure: bool = False,
    settle_seconds: int = 0,
) -> bool:
    """Credit a succeeded card payment to the user's wallet; False if it was credited before.

    The wallet is opened if the user has none in this currency yet: a payment can arrive
    before the user's registration event (two producers, no order between them). Unless 3-D
    Secure authenticated the payment, the money cannot be sent on for `settle_seconds`: a
    stolen card's money stays in the wallet, where a chargeback can still take it back. What
    of it paid the user's debt first (`ledger.post`) is not held back: it left the wallet.
    """
    wallet = await accounts.open_wallet(session, user_id, currency)
    funding = await accounts.system_account(session, SystemAccount.CARD_FUNDING, currency)
    posted = await ledger.post(
        session,
        type_=LedgerTransactionType.TOP_UP,
        reference=payment_id,
        entries=[
            ledger.NewEntry(
                account_id=funding, amount=-amount, currency=currency, type=EntryType.TOP_UP
            ),
            ledger.NewEntry(
                account_id=wallet, amount=amount, currency=currency, type=EntryType.TOP_UP
            ),
        ],
    )
    if posted is None:
        logger.info("payment %s was credited before; not again", payment_id)
        return False
    # What paid the user's debt is gone from the wallet: only the rest can wait to settle.
    kept = amount - posted.debt_settled.get(wallet, 0)
    if kept > 0:
        await limits.hold_back_card_funds(
            session,
            transaction_id=posted.id,
            wallet=wallet,
            amount=kept,
            credited_at=posted.created_at,
            three_d_secure=three_d_secure,
            settle_seconds=settle_seconds,
        )
    return True


async def apply_refund(
    session: AsyncSession,
    *,
    refund_id: str,
    user_id: str,
    amount: int,
    currency: str,
    hold_id: str | None,
) -> RefundOutcome:
    """Reflect a card refund in the wallet exactly once.

    When the refund names the hold the payment service reserved for it, that hold is the
    refund: captured already means done, still active means capture it now. Otherwise (no
    hold, or it was voided or expired) the wallet is debited directly under the refund id.
    """
    if hold_id is not None:
        outcome = await _through_hold(session, hold_id, user_id, amount, currency)
        if outcome is not None:
            return outcome
    return await debit_refund(
        session, reference=refund_id, user_id=user_id, amount=amount, currency=currency
    )


async def _through_hold(
    session: AsyncSession, hold_id: str, user_id: str, amount: int, currency: str
) -> RefundOutcome | None:
    try:
        parsed = uuid.UUID(hold_id)
    except ValueError:
        logger.warning("refund names hold %r, which is not a hold id", hold_id)
        return None
    try:
        hold = await holds_service.get_hold(session, parsed)
    except HoldNotFound:
        hold = None
    if hold is None or (hold.user_id, hold.amount, hold.currency) != (user_id, amount, currency):
        logger.warning("refund names hold %s, which does not match it; debiting directly", hold_id)
        return None
    if hold.status == HoldStatus.CAPTURED:
        return RefundOutcome("already_applied")
    if hold.status == HoldStatus.ACTIVE:
        try:
            await holds_service.capture(session, parsed)
        except HoldNotActive:
            return None  # it expired just now: fall back to a direct debit
        return RefundOutcome("hold_captured", debited=amount)
    return None


async def debit_refund(
    session: AsyncSession, *, reference: str, user_id: str, amount: int, currency: str
) -> RefundOutcome:
    """Debit a refund made without a hold (say, from Stripe's dashboard), once per reference.

    The card has been refunded already, so the ledger must record the money leaving. A wallet
    is never overdrawn: it gives what is available (holds stay intact), and the rest is posted
    to the refund-shortfall system account — a receivable from the user for operators to
    settle — so the transaction still balances and the gap is visible in the ledger.
    """
    if await ledger.transaction_by_reference(session, LedgerTransactionType.REFUND, reference):
        return RefundOutcome("already_applied")
    wallet = await accounts.find_wallet(session, user_id, currency)
    refunds = await accounts.system_account(session, SystemAccount.REFUNDS, currency)
    shortfall_account = await accounts.system_account(
        session, SystemAccount.REFUND_SHORTFALL, currency
    )
    locked = await ledger.release_overdue_holds(
        session,
        await ledger.lock_accounts(
            session, [refunds, shortfall_account, *([wallet] if wallet is not None else [])]
        ),
    )
    available = 0
    if wallet is not None:
        available = max(locked[wallet].balance - locked[wallet].held, 0)
    debited = min(amount, available)
    shortfall = amount - debited
    entries = [
        ledger.NewEntry(account_id=refunds, amount=amount, currency=currency, type=EntryType.REFUND)
    ]
    if wallet is not None and debited:
        entries.append(
            ledger.NewEntry(
                account_id=wallet, amount=-debited, currency=currency, type=EntryType.REFUND
            )
        )
    if shortfall:
        entries.append(
            ledger.NewEntry(
                account_id=shortfall_account,
                amount=-shortfall,
                currency=currency,
                type=EntryType.REFUND,
            )
        )
    posted = await ledger.post(
        session, type_=LedgerTransactionType.REFUND, reference=reference, entries=entries
    )
    if posted is None:
        return RefundOutcome("already_applied")
    if shortfall:
        logger.warning(
            "refund %s of %d %s exceeds what user %s has available; debited %d, "
            "recorded %d as refund shortfall",
            reference,
            amount,
            currency,
            user_id,
            debited,
            shortfall,
            extra={"refund": reference, "user_id": user_id, "shortfall": shortfall},
        )
    return RefundOutcome("debited", debited=debited, shortfall=shortfall)


async def fail_refund(
    session: AsyncSession,
    *,
    refund_id: str,
    user_id: str,
    amount: int,
    currency: str,
    hold_id: str | None,
    was_refunded: bool,
) -> RefundOutcome:
    """Undo a refund Stripe failed or cancelled: release its hold, or reverse its debit, once.

    `was_refunded` says `payment.refunded` was published for it first (Stripe had said
    succeeded). The two events may arrive in either order, so that debit is applied here if it
    has not been yet (the later `payment.refunded` then finds it applied) and reversed at
    once: a debit and its reversal, never a lone debit. A refund that never succeeded only
    gives its hold back.
    """
    if was_refunded:
        await apply_refund(
            session,
            refund_id=refund_id,
            user_id=user_id,
            amount=amount,
            currency=currency,
            hold_id=hold_id,
        )
    elif hold_id is not None:
        released = await _release_hold(session, hold_id)
        if released:
            return RefundOutcome("hold_released")
    debit = await _refund_debit(session, refund_id, hold_id)
    if debit is None:
        return RefundOutcome("already_applied")
    posted = await ledger.reverse(
        session,
        debit,
        type_=LedgerTransactionType.REFUND_REVERSAL,
        reference=refund_id,
        entry_type=EntryType.REFUND_REVERSAL,
    )
    if posted is None:
        logger.info("refund %s was reversed before; not again", refund_id)
        return RefundOutcome("already_applied")
    logger.info("refund %s failed at Stripe; its debit is reversed", refund_id)
    return RefundOutcome("reversed")


async def _release_hold(session: AsyncSession, hold_id: str) -> bool:
    """Void the refund's hold if it is still active; True when it was."""
    try:
        parsed = uuid.UUID(hold_id)
        hold = await holds_service.get_hold(session, parsed)
    except (ValueError, HoldNotFound):
        return False
    if hold.status != HoldStatus.ACTIVE:
        return False
    try:
        released = await holds_service.void(session, parsed)
    except HoldNotActive:  # captured meanwhile: its debit is reversed instead
        return False
    return released.status == HoldStatus.VOIDED


async def _refund_debit(
    session: AsyncSession, refund_id: str, hold_id: str | None
) -> uuid.UUID | None:
    """The ledger transaction that debited the wallet for a refund, if any."""
    if hold_id is not None:
        try:
            hold = await holds_service.get_hold(session, uuid.UUID(hold_id))
        except (ValueError, HoldNotFound):
            hold = None
        if hold is not None and hold.transaction_id is not None:
            return hold.transaction_id
    return await ledger.transaction_by_reference(session, LedgerTransactionType.REFUND, refund_id)


@dataclass(frozen=True)
class DisputeOutcome:
    """What a dispute step did to the ledger."""

    how: Literal["withdrawn", "reinstated", "already_applied"]
    debited: int = 0
    """Taken from the wallet (a withdrawal)."""
    owed: int = 0
    """Recorded as owed in the user's debt account (a withdrawal)."""


async def withdraw_for_dispute(
    session: AsyncSession,
    *,
    dispute_id: str,
    user_id: str,
    amount: int,
    currency: str,
    fee: int,
    fee_currency: str | None,
) -> DisputeOutcome:
    """Take a disputed amount Stripe withdrew from the wallet, once per dispute.

    The wallet gives what it has available (balance less active holds: a held amount is
    already promised to a refund), card money still settling included (it is the user's, only
    not sendable yet; keeping it in the wallet for a chargeback is the settle period's point);
    the rest is recorded as owed in the user's debt account, never as a negative wallet.
    Stripe's fee is the platform's cost, posted between its own accounts (`platform_funds`
    pays `dispute_fees`) and never charged to the wallet.
    """
    if await ledger.transaction_by_reference(
        session, LedgerTransactionType.DISPUTE_WITHDRAWAL, dispute_id
    ):
        return DisputeOutcome("already_applied")
    wallet = await accounts.open_wallet(session, user_id, currency)
    debt = await accounts.debt_account(session, user_id, currency)
    disputes = await accounts.system_account(session, SystemAccount.DISPUTES, currency)
    fee_accounts = await _fee_accounts(session, fee, fee_currency or currency)
    # Every account of the posting locked in one call, before the wallet is weighed.
    locked = await ledger.release_overdue_holds(
        session, await ledger.lock_accounts(session, [wallet, debt, disputes, *fee_accounts])
    )
    available = max(locked[wallet].balance - locked[wallet].held, 0)
    debited = min(amount, available)
    owed = amount - debited
    entries = [
        ledger.NewEntry(
            account_id=disputes,
            amount=amount,
            currency=currency,
            type=EntryType.DISPUTE_WITHDRAWAL,
        )
    ]
    for account_id, part in ((wallet, debited), (debt, owed)):
        if part:
            entries.append(
                ledger.NewEntry(
                    account_id=account_id,
                    amount=-part,
                    currency=currency,
                    type=EntryType.DISPUTE_WITHDRAWAL,
                )
            )
    entries.extend(_fee_entries(fee_accounts, fee, fee_currency or currency))
    posted = await ledger.post(
        session,
        type_=LedgerTransactionType.DISPUTE_WITHDRAWAL,
        reference=dispute_id,
        entries=entries,
    )
    if posted is None:
        return DisputeOutcome("already_applied")
    if owed:
        logger.warning(
            "dispute %s withdrew %d %s; user %s had %d available and now owes %d",
            dispute_id,
            amount,
            currency,
            user_id,
            debited,
            owed,
            extra={"dispute": dispute_id, "user_id": user_id, "owed": owed},
        )
    return DisputeOutcome("withdrawn", debited=debited, owed=owed)


async def reinstate_for_dispute(
    session: AsyncSession,
    *,
    dispute_id: str,
    user_id: str,
    amount: int,
    currency: str,
    fee: int,
    fee_returned: int,
    fee_currency: str | None,
) -> DisputeOutcome:
    """Give a won dispute's amount back once: the user's debt paid first, the rest credited.

    The withdrawal is posted first if its event has not arrived yet (the events may arrive in
    either order): a reinstatement never stands without its withdrawal. The credit goes
    through the ledger's rule for any credit to a wallet that owes (debt first), so the debt
    this dispute left is cancelled before the wallet gets the rest. A fee Stripe gave back
    returns to the platform's own accounts.
    """
    await withdraw_for_dispute(
        session,
        dispute_id=dispute_id,
        user_id=user_id,
        amount=amount,
        currency=currency,
        fee=fee,
        fee_currency=fee_currency,
    )
    if await ledger.transaction_by_reference(
        session, LedgerTransactionType.DISPUTE_REINSTATEMENT, dispute_id
    ):
        return DisputeOutcome("already_applied")
    wallet = await accounts.open_wallet(session, user_id, currency)
    disputes = await accounts.system_account(session, SystemAccount.DISPUTES, currency)
    fee_accounts = await _fee_accounts(session, fee_returned, fee_currency or currency)
    entries = [
        ledger.NewEntry(
            account_id=disputes,
            amount=-amount,
            currency=currency,
            type=EntryType.DISPUTE_REINSTATEMENT,
        ),
        ledger.NewEntry(
            account_id=wallet,
            amount=amount,
            currency=currency,
            type=EntryType.DISPUTE_REINSTATEMENT,
        ),
        *_fee_entries(fee_accounts, -fee_returned, fee_currency or currency),
    ]
    posted = await ledger.post(
        session,
        type_=LedgerTransactionType.DISPUTE_REINSTATEMENT,
        reference=dispute_id,
        entries=entries,
    )
    if posted is None:
        return DisputeOutcome("already_applied")
    logger.info("dispute %s won: %d %s given back", dispute_id, amount, currency)
    return DisputeOutcome("reinstated")


async def _fee_accounts(session: AsyncSession, fee: int, currency: str) -> list[AccountId]:
    """[dispute_fees, platform_funds] in `currency` when there is a fee to post, else []."""
    if not fee:
        return []
    return [
        await accounts.system_account(session, SystemAccount.DISPUTE_FEES, currency),
        await accounts.system_account(session, SystemAccount.PLATFORM_FUNDS, currency),
    ]


def _fee_entries(fee_accounts: list[AccountId], fee: int, currency: str) -> list[ledger.NewEntry]:
    """The platform pays `fee` (negative: is paid back) to dispute_fees."""
    if not fee_accounts or not fee:
        return []
    fees, platform = fee_accounts
    return [
        ledger.NewEntry(account_id=fees, amount=fee, currency=currency, type=EntryType.DISPUTE_FEE),
        ledger.NewEntry(
            account_id=platform, amount=-fee, currency=currency, type=EntryType.DISPUTE_FEE
        ),
    ]
