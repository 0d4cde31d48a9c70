"""Event handlers: apply each event, validated by the events router, through the domain services."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from micropay_common.events import (
    PaymentDisputeFundsReinstated,
    PaymentDisputeFundsWithdrawn,
    PaymentRefunded,
    PaymentRefundFailed,
    PaymentSucceeded,
    UserRegistered,
)
from micropay_common.inbox import EventHandler, EventMeta, on
from transactions_microservice.accounts import service as accounts
from transactions_microservice.funding import service as funding
from transactions_microservice.invitations import service as invitations
from transactions_microservice.requests import service as requests
from transactions_microservice.settings import TransactionsSettings


class EventHandlers:
    """The handlers of one app; they read its settings once it has started."""

    def __init__(self) -> None:
        self._settings: TransactionsSettings | None = None

    def configure(self, settings: TransactionsSettings) -> None:
        """Give the handlers the app's settings (at start-up)."""
        self._settings = settings

    @property
    def settings(self) -> TransactionsSettings:
        """The app's settings; the app has started before any event arrives."""
        if self._settings is None:
            raise RuntimeError("event handlers used before the app started")
        return self._settings

    def routes(self) -> list[EventHandler[Any]]:
        """The handler of each event type, for events_router."""
        return [
            on(UserRegistered, self.user_registered),
            on(PaymentSucceeded, self.payment_succeeded),
            on(PaymentRefunded, self.payment_refunded),
            on(PaymentRefundFailed, self.payment_refund_failed),
            on(PaymentDisputeFundsWithdrawn, self.payment_dispute_funds_withdrawn),
            on(PaymentDisputeFundsReinstated, self.payment_dispute_funds_reinstated),
        ]

    async def user_registered(
        self, session: AsyncSession, event: UserRegistered, meta: EventMeta
    ) -> None:
        """Record the user's email, open their wallet in the default currency, and hand them
        the money requests and the transfers that waited for their email."""
        await accounts.register_user(
            session, event.user_id, event.email, self.settings.default_currency
        )
        await requests.address_payer(session, event.user_id, event.email)
        await invitations.complete_for(session, event.user_id, event.email)

    async def payment_succeeded(
        self, session: AsyncSession, event: PaymentSucceeded, meta: EventMeta
    ) -> None:
        """Credit the wallet with a top-up line, once per payment (settling unless 3DS)."""
        await funding.credit_top_up(
            session,
            payment_id=event.payment_id,
            user_id=event.user_id,
            amount=event.amount,
            currency=event.currency,
            three_d_secure=event.three_d_secure,
            settle_seconds=self.settings.card_funds_settle_seconds,
        )

    async def payment_refunded(
        self, session: AsyncSession, event: PaymentRefunded, meta: EventMeta
    ) -> None:
        """Debit the wallet for the refund once (through its hold when it names one)."""
        await funding.apply_refund(
            session,
            refund_id=event.refund_id,
            user_id=event.user_id,
            amount=event.amount,
            currency=event.currency,
            hold_id=event.hold_id,
        )

    async def payment_refund_failed(
        self, session: AsyncSession, event: PaymentRefundFailed, meta: EventMeta
    ) -> None:
        """Release the failed refund's hold, or credit its debit back once (`refund_reversal`)."""
        await funding.fail_refund(
            session,
            refund_id=event.refund_id,
            user_id=event.user_id,
            amount=event.amount,
            currency=event.currency,
            hold_id=event.hold_id,
            was_refunded=event.was_refunded,
        )

    async def payment_dispute_funds_withdrawn(
        self, session: AsyncSession, event: PaymentDisputeFundsWithdrawn, meta: EventMeta
    ) -> None:
        """Take the disputed amount from the wallet as far as it covers it, the rest owed; once."""
        await funding.withdraw_for_dispute(
            session,
            dispute_id=event.dispute_id,
            user_id=event.user_id,
            amount=event.amount,
            currency=event.currency,
            fee=event.fee,
            fee_currency=event.fee_currency,
        )

    async def payment_dispute_funds_reinstated(
        self, session: AsyncSession, event: PaymentDisputeFundsReinstated, meta: EventMeta
    ) -> None:
        """Give a won dispute's amount back once, the user's debt paid first."""
        await funding.reinstate_for_dispute(
            session,
            dispute_id=event.dispute_id,
            user_id=event.user_id,
            amount=event.amount,
            currency=event.currency,
            fee=event.fee,
            fee_returned=event.fee_returned,
            fee_currency=event.fee_currency,
        )
