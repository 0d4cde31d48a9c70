"""The ledger's tables in the `transactions` schema, as PostgreSQL.sql defines them."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import NewType, cast

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from micropay_common.constraints import check_in
from micropay_common.services import SERVICES, ServiceName

SCHEMA = SERVICES[ServiceName.TRANSACTIONS].schema

AccountId = NewType("AccountId", int)
"""An account's id: a type of its own, so that an amount passed for an account fails mypy."""


class AccountKind(StrEnum):
    """Whose an account is."""

    USER = "user"
    """A user's wallet in one currency; it can never go negative."""
    SYSTEM = "system"
    """Where money enters and leaves MicroPay; one per code (SystemAccount) and currency."""
    DEBT = "debt"
    """What a user owes MicroPay in one currency (`debtor_id`): a disputed amount their wallet
    could not cover. Never positive: its balance is minus what is owed."""


class SystemAccount(StrEnum):
    """The system accounts by code (`system_code`), each opened per currency on first use."""

    CARD_FUNDING = "card_funding"
    """Money that came in by card: credited to wallets on top-up, so its balance is negative."""
    REFUNDS = "refunds"
    """Money sent back to cards: debited from wallets on refund, so its balance is positive."""
    REFUND_SHORTFALL = "refund_shortfall"
    """The part of an external refund a wallet could not cover: what users owe, negative."""
    DISPUTES = "disputes"
    """Money Stripe withdrew for disputed charges (less what it reinstated): positive."""
    DISPUTE_FEES = "dispute_fees"
    """Stripe's fees for disputes, paid by the platform, never by a wallet: positive."""
    PLATFORM_FUNDS = "platform_funds"
    """The platform's own money, paying its costs (the dispute fees): negative."""


class LedgerTransactionType(StrEnum):
    """What a ledger transaction is; with its reference, it is unique."""

    TOP_UP = "top_up"
    TRANSFER = "transfer"
    REFUND = "refund"
    REFUND_REVERSAL = "refund_reversal"
    """A refund Stripe failed after the wallet was debited for it: the debit, undone once."""
    DISPUTE_WITHDRAWAL = "dispute_withdrawal"
    """Stripe withdrew a disputed amount: from the wallet as far as it covers it, the rest owed
    (the user's debt account), and Stripe's fee on the platform; once per dispute."""
    DISPUTE_REINSTATEMENT = "dispute_reinstatement"
    """Stripe gave a disputed amount back (the dispute was won): once per dispute."""
    DEBT_SETTLEMENT = "debt_settlement"
    """Money a wallet's hold stopped reserving (voided or expired) while its user owes, paid at
    once to the debt; once per hold (its reference)."""


class EntryType(StrEnum):
    """What an entry is to the owner of its account, as their history shows it."""

    TOP_UP = "top_up"
    TRANSFER_IN = "transfer_in"
    TRANSFER_OUT = "transfer_out"
    REFUND = "refund"
    REFUND_REVERSAL = "refund_reversal"
    DISPUTE_WITHDRAWAL = "dispute_withdrawal"
    DISPUTE_REINSTATEMENT = "dispute_reinstatement"
    DISPUTE_FEE = "dispute_fee"
    """On the platform's accounts only: Stripe's fee for a dispute."""
    DEBT_SETTLEMENT = "debt_settlement"
    """Money credited to a wallet that owes, or released from one of its holds, moved on at once
    to pay the debt."""


class HoldStatus(StrEnum):
    """Where a hold stands: active until it is captured, voided or expires."""

    ACTIVE = "active"
    CAPTURED = "captured"
    """Posted as a refund entry (`transaction_id`)."""
    VOIDED = "voided"
    EXPIRED = "expired"


class Base(DeclarativeBase):
    """Declarative base of the transactions service's own tables."""


class Account(Base):
    """A user's wallet, a user's debt or a system account, in one currency; balances are cached
    sums."""

    __tablename__ = "accounts"
    __table_args__ = (
        check_in("kind", AccountKind, name="accounts_kind_check"),
        CheckConstraint(
            "(kind = 'user') = (user_id IS NOT NULL) "
            "AND (kind = 'system') = (system_code IS NOT NULL) "
            "AND (kind = 'debt') = (debtor_id IS NOT NULL)",
            name="accounts_owner_check",
        ),
        CheckConstraint("kind <> 'debt' OR balance <= 0", name="accounts_debt_balance_check"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="accounts_currency_check"),
        CheckConstraint("held >= 0 AND (kind = 'user' OR held = 0)", name="accounts_held_check"),
        CheckConstraint("kind <> 'user' OR balance >= 0", name="accounts_wallet_balance_check"),
        CheckConstraint(
            "kind <> 'user' OR balance - held >= 0", name="accounts_wallet_available_check"
        ),
        UniqueConstraint("user_id", "currency", name="accounts_user_currency_key"),
        UniqueConstraint("system_code", "currency", name="accounts_system_currency_key"),
        UniqueConstraint("debtor_id", "currency", name="accounts_debtor_currency_key"),
        {"schema": SCHEMA},
    )

    id: Mapped[AccountId] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    kind: Mapped[str] = mapped_column(Text)
    user_id: Mapped[str | None] = mapped_column(Text)
    system_code: Mapped[str | None] = mapped_column(Text)
    debtor_id: Mapped[str | None] = mapped_column(Text)
    """The user who owes, for a debt account (kept apart from `user_id`, which names wallets)."""
    currency: Mapped[str] = mapped_column(Text)
    balance: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    held: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class User(Base):
    """A registered user's email (lower case), for transfers by email."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("email = lower(email)", name="users_email_lower_check"),
        UniqueConstraint("email", name="users_email_key"),
        {"schema": SCHEMA},
    )

    user_id: Mapped[str] = mapped_column(Text, primary_key=True)
    email: Mapped[str] = mapped_column(Text)
    registered_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class LedgerTransaction(Base):
    """One movement of money: its entries sum to zero per currency."""

    __tablename__ = "ledger_transactions"
    __table_args__ = (
        check_in("type", LedgerTransactionType, name="ledger_transactions_type_check"),
        UniqueConstraint("type", "reference", name="ledger_transactions_type_reference_key"),
        {"schema": SCHEMA},
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    type: Mapped[str] = mapped_column(Text)
    reference: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Entry(Base):
    """One signed amount of a ledger transaction on one account, with the balance it left."""

    __tablename__ = "entries"
    __table_args__ = (
        check_in("type", EntryType, name="entries_type_check"),
        CheckConstraint("amount <> 0", name="entries_amount_check"),
        Index(
            "entries_account_history_idx",
            "account_id",
            text("created_at DESC"),
            text("id DESC"),
        ),
        Index(
            "entries_account_type_history_idx",
            "account_id",
            "type",
            text("created_at DESC"),
            text("id DESC"),
        ),
        Index("entries_transaction_idx", "transaction_id"),
        {"schema": SCHEMA},
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    transaction_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey(f"{SCHEMA}.ledger_transactions.id")
    )
    account_id: Mapped[AccountId] = mapped_column(BigInteger, ForeignKey(f"{SCHEMA}.accounts.id"))
    type: Mapped[str] = mapped_column(Text)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(Text)
    balance_after: Mapped[int] = mapped_column(BigInteger)
    counterparty_user_id: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Hold(Base):
    """Money reserved on a wallet until it is captured (posted), voided or expires."""

    __tablename__ = "holds"
    __table_args__ = (
        CheckConstraint("amount > 0", name="holds_amount_check"),
        check_in("status", HoldStatus, name="holds_status_check"),
        CheckConstraint(
            "(status = 'captured') = (transaction_id IS NOT NULL)", name="holds_capture_check"
        ),
        UniqueConstraint("reference", name="holds_reference_key"),
        Index("holds_active_expiry_idx", "expires_at", postgresql_where=text("status = 'active'")),
        Index("holds_active_account_idx", "account_id", postgresql_where=text("status = 'active'")),
        Index("holds_account_created_idx", "account_id", "created_at"),
        {"schema": SCHEMA},
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    account_id: Mapped[AccountId] = mapped_column(BigInteger, ForeignKey(f"{SCHEMA}.accounts.id"))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(Text)
    reference: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, server_default=text("'active'"))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    transaction_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey(f"{SCHEMA}.ledger_transactions.id")
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class TopUpSettlement(Base):
    """Card money not yet settled: the wallet may not send it on before `settles_at`."""

    __tablename__ = "top_up_settlements"
    __table_args__ = (
        CheckConstraint("amount > 0", name="top_up_settlements_amount_check"),
        Index("top_up_settlements_account_idx", "account_id", "settles_at"),
        {"schema": SCHEMA},
    )

    transaction_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey(f"{SCHEMA}.ledger_transactions.id"), primary_key=True
    )
    account_id: Mapped[AccountId] = mapped_column(BigInteger, ForeignKey(f"{SCHEMA}.accounts.id"))
    amount: Mapped[int] = mapped_column(BigInteger)
    settles_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class MoneyRequestStatus(StrEnum):
    """Where a money request stands: open until it is paid, declined, cancelled or expires."""

    OPEN = "open"
    PAID = "paid"
    """Paid by the payer with a transfer (`transfer_id`), in the transaction that marked it."""
    DECLINED = "declined"
    CANCELED = "canceled"
    EXPIRED = "expired"


class MoneyRequest(Base):
    """A user's request that the owner of an email send them an amount.

    `payer_id` is empty while the email names no account the ledger knows: the request waits
    for that account's `user.registered`, and expires as usual if it never comes.
    """

    __tablename__ = "money_requests"
    __table_args__ = (
        CheckConstraint("amount > 0", name="money_requests_amount_check"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="money_requests_currency_check"),
        CheckConstraint("payer_email = lower(payer_email)", name="money_requests_email_check"),
        check_in("status", MoneyRequestStatus, name="money_requests_status_check"),
        CheckConstraint(
            "(status = 'paid') = (transfer_id IS NOT NULL)", name="money_requests_paid_check"
        ),
        CheckConstraint(
            "(status = 'open') = (resolved_at IS NULL)", name="money_requests_resolved_check"
        ),
        UniqueConstraint("transfer_id", name="money_requests_transfer_key"),
        Index(
            "money_requests_requester_idx",
            "requester_id",
            text("created_at DESC"),
            text("id DESC"),
        ),
        Index("money_requests_payer_idx", "payer_id", text("created_at DESC"), text("id DESC")),
        Index(
            "money_requests_waiting_idx",
            "payer_email",
            postgresql_where=text("payer_id IS NULL AND status = 'open'"),
        ),
        Index(
            "money_requests_open_expiry_idx",
            "expires_at",
            postgresql_where=text("status = 'open'"),
        ),
        {"schema": SCHEMA},
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    requester_id: Mapped[str] = mapped_column(Text)
    requester_email: Mapped[str] = mapped_column(Text)
    payer_email: Mapped[str] = mapped_column(Text)
    payer_id: Mapped[str | None] = mapped_column(Text)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, server_default=text("'open'"))
    transfer_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey(f"{SCHEMA}.ledger_transactions.id")
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class InvitationStatus(StrEnum):
    """Where a transfer to an email without an account stands: pending until that email signs
    up (completed), the sender cancels it or it expires."""

    PENDING = "pending"
    COMPLETED = "completed"
    """Posted as a transfer whose id is the invitation's, its hold captured by it."""
    CANCELED = "canceled"
    EXPIRED = "expired"


class TransferInvitation(Base):
    """A transfer to an email that has no account yet: its amount held on the sender's wallet
    (`hold_id`) until the email signs up, the sender cancels or it expires."""

    __tablename__ = "transfer_invitations"
    __table_args__ = (
        CheckConstraint("amount > 0", name="transfer_invitations_amount_check"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="transfer_invitations_currency_check"),
        CheckConstraint("to_email = lower(to_email)", name="transfer_invitations_email_check"),
        check_in("status", InvitationStatus, name="transfer_invitations_status_check"),
        CheckConstraint(
            "(status = 'completed') = (recipient_id IS NOT NULL)",
            name="transfer_invitations_completed_check",
        ),
        CheckConstraint(
            "(status = 'pending') = (resolved_at IS NULL)",
            name="transfer_invitations_resolved_check",
        ),
        UniqueConstraint("hold_id", name="transfer_invitations_hold_key"),
        Index(
            "transfer_invitations_waiting_idx",
            "to_email",
            postgresql_where=text("status = 'pending'"),
        ),
        Index(
            "transfer_invitations_pending_sender_idx",
            "sender_id",
            "currency",
            "created_at",
            postgresql_where=text("status = 'pending'"),
        ),
        Index(
            "transfer_invitations_pending_expiry_idx",
            "expires_at",
            postgresql_where=text("status = 'pending'"),
        ),
        {"schema": SCHEMA},
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    sender_id: Mapped[str] = mapped_column(Text)
    sender_email: Mapped[str] = mapped_column(Text)
    to_email: Mapped[str] = mapped_column(Text)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    hold_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey(f"{SCHEMA}.holds.id"))
    status: Mapped[str] = mapped_column(Text, server_default=text("'pending'"))
    recipient_id: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# Core handles for the SQL in the repositories: the hot paths skip the ORM's unit of work.
accounts = cast(Table, Account.__table__)
users = cast(Table, User.__table__)
ledger_transactions = cast(Table, LedgerTransaction.__table__)
entries = cast(Table, Entry.__table__)
holds = cast(Table, Hold.__table__)
top_up_settlements = cast(Table, TopUpSettlement.__table__)
money_requests = cast(Table, MoneyRequest.__table__)
transfer_invitations = cast(Table, TransferInvitation.__table__)
