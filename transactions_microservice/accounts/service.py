"""Rules for wallets and the user directory."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from micropay_common.db import Direct
from transactions_microservice.accounts import repository
from transactions_microservice.accounts.exceptions import InstantInFuture
from transactions_microservice.accounts.schemas import BalanceRead, BalancesRead
from transactions_microservice.models import AccountId, SystemAccount

logger = logging.getLogger("micropay.transactions.accounts")


def normalise_email(email: str) -> str:
    """Emails are compared in lower case, without surrounding blanks."""
    return email.strip().lower()


async def register_user(
    session: AsyncSession, user_id: str, email: str, currency: str
) -> AccountId:
    """Record the user's email and open their wallet in `currency`; returns the wallet id."""
    email = normalise_email(email)
    # The auth service lets one user at a time own an email: a newer registration with it
    # means the previous owner's account is gone, and transfers to it must reach the new one.
    if await repository.release_email(session, email, user_id):
        logger.warning("email of user %s moved to a newer registration", user_id)
    await repository.upsert_user(session, user_id, email)
    return await repository.open_wallet(session, user_id, currency)


async def find_wallet(session: AsyncSession, user_id: str, currency: str) -> AccountId | None:
    """Id of the user's wallet in `currency`, if they have one."""
    return (await repository.wallet_ids(session, [user_id], currency)).get(user_id)


async def open_wallet(session: AsyncSession, user_id: str, currency: str) -> AccountId:
    """Id of the user's wallet in `currency`, opening it when missing."""
    return await repository.open_wallet(session, user_id, currency)


async def system_account(session: AsyncSession, code: SystemAccount, currency: str) -> AccountId:
    """Id of a system account in `currency`, opening it on first use."""
    return await repository.system_account(session, code, currency)


async def debt_account(session: AsyncSession, user_id: str, currency: str) -> AccountId:
    """Id of the user's debt account in `currency` (what they owe), opening it when missing."""
    return await repository.debt_account(session, user_id, currency)


async def owed(session: AsyncSession, user_id: str, currency: str) -> int:
    """What the user owes in `currency` now (exact while the caller holds their wallet's lock:
    a debt grows only under that lock)."""
    return await repository.owed(session, user_id, currency)


def refuse_future(at: datetime, name: str = "at") -> None:
    """Refuse an instant after now: what it would show is not known yet."""
    now = datetime.now(UTC)
    if at > now:
        raise InstantInFuture(
            f"`{name}` is in the future; the ledger is known up to now.",
            now=now.isoformat(),
        )


async def balances(db: Direct, user_id: str, at: datetime | None = None) -> BalancesRead:
    """The user's wallets with their available balances (card money still settling apart) and
    what the user owes in each; now, or as they were at the instant `at`."""
    if at is None:
        wallets = await repository.balances(db, user_id)
    else:
        refuse_future(at)
        wallets = await repository.balances_at(db, user_id, at)
    return _read(wallets)


def _read(wallets: list[repository.WalletBalance]) -> BalancesRead:
    read = []
    for wallet in wallets:
        # Settling card money counts only as far as the wallet still has it (a refund of the
        # top-up may have taken it back already).
        pending = min(wallet.unsettled, max(wallet.balance - wallet.held, 0))
        read.append(
            BalanceRead(
                currency=wallet.currency,
                available=wallet.balance - wallet.held - pending,
                balance=wallet.balance,
                held=wallet.held,
                pending=pending,
                owed=wallet.owed,
            )
        )
    return BalancesRead(balances=read)
