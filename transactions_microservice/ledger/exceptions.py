"""Problems of the ledger."""

from __future__ import annotations

from micropay_common.errors import Conflict, NotFound


class InsufficientFunds(Conflict):
    """409: the wallet's available balance does not cover the amount."""

    type = "insufficient_funds"
    title = "Insufficient funds"


class WalletHasDebt(Conflict):
    """409: the user owes money in this currency (a disputed top-up); nothing can leave the
    wallet, by transfer or by refund, until the debt is paid."""

    type = "wallet_has_debt"
    title = "Wallet has debt"


class EntryNotFound(NotFound):
    """404: no ledger entry with this id among the caller's."""

    type = "not_found"
    title = "Ledger entry not found"


class UnbalancedTransaction(ValueError):
    """A posting whose entries do not sum to zero per currency: a bug, never a user error."""
