"""Drives a refund: wallet hold, Stripe (or PayPal) refund, capture — each step its own
transaction.

1. reserve the amount on the payment (row locked) and commit the refund as `pending`;
2. place a hold on the wallet (transactions service; the reference is the refund id, so a
   retry finds the same hold). A wallet that cannot cover it → 409 `insufficient_funds`, and a
   wallet whose user owes money in the currency (a lost dispute) → 409 `wallet_has_debt`: the
   refund fails and Stripe is never called;
3. refund at Stripe with an idempotency key derived from the refund id (or, once Stripe has
   the refund, retrieve it). Stripe refuses → the hold is voided and the refund fails. While
   Stripe is being called the hold is renewed, so a slow or retried call never outlives it;
4. act on the Refund's status as Stripe has it: `succeeded` → capture the hold (the wallet's
   debit) and settle with `payment.refunded`; `pending` or `requires_action` → the refund
   stays pending with its hold, until a webhook or the reconciler reads it again; `failed` or
   `canceled` → void the hold and fail with `payment.refund_failed`.

A refund of a PayPal payment takes the same steps, refunding the payment's PayPal capture with
`PayPal-Request-Id` derived from the refund id; PayPal's statuses (COMPLETED, PENDING, FAILED,
CANCELLED) are read as Stripe's.

Each step records its result (hold id, Stripe or PayPal refund id) before the next, so a retry
with the same Idempotency-Key, or the reconciler, resumes where a crash or an outage stopped it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from micropay_common.errors import ProblemError, ServiceUnavailable
from micropay_common.idempotency import KeyedRequest, Submission, keyed_resources
from micropay_common.security import AuthenticatedUser
from payment_microservice.models import Payment, PaymentProvider, Refund, RefundStatus
from payment_microservice.payments import service as payments_service
from payment_microservice.payments.exceptions import PaymentProviderUnavailable
from payment_microservice.paypal_api import (
    PayPalApi,
    PayPalNotConfigured,
    PayPalRefused,
    PayPalUnavailable,
)
from payment_microservice.refunds import repository, service
from payment_microservice.refunds.schemas import RefundCreate
from payment_microservice.settings import PaymentSettings
from payment_microservice.stripe_api import (
    RefundState,
    StripeApi,
    StripeRefused,
    StripeUnavailable,
)
from payment_microservice.wallet import (
    HoldNotCapturable,
    InsufficientFunds,
    WalletClient,
    WalletHasDebt,
)

logger = logging.getLogger("micropay.payment.refunds")

RENEW_FRACTION = 3
"""A kept hold is renewed when a third of its time to live has passed (two thirds left)."""
RENEW_MIN_SECONDS = 0.2
"""The shortest wait between two renewals, and between retries when the wallet is down."""


class RefundDriver:
    """Creates refunds and drives them through the wallet and Stripe."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        stripe: StripeApi,
        wallet: WalletClient,
        settings: PaymentSettings,
        paypal: PayPalApi,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.stripe = stripe
        self.wallet = wallet
        self.settings = settings
        self.paypal = paypal

    async def submit(
        self,
        *,
        user: AuthenticatedUser,
        payment_id: uuid.UUID,
        keyed: KeyedRequest,
        body: RefundCreate,
    ) -> Submission[Refund]:
        """Create the refund for this key (or find it) and drive it unless it is settled."""

        async def create(session: AsyncSession) -> Refund | None:
            return await service.reserve(
                session,
                user,
                payment_id,
                idempotency_key=keyed.key,
                request_hash=keyed.fingerprint,
                body=body,
                lease_seconds=self.settings.lease_seconds,
            )

        return await keyed_resources.submit(
            self.sessionmaker,
            Refund,
            keyed,
            find=lambda session: repository.get_by_key(session, user.id, keyed.key),
            create=create,
            drive=self.drive,
            resumable=(RefundStatus.PENDING,),
            lease_seconds=self.settings.lease_seconds,
            conflict_detail=(
                "This Idempotency-Key was first used for a different request; keys are for "
                "retrying the same request. Use a new key for a different refund."
            ),
        )

    async def drive(self, refund: Refund) -> Refund:
        """Take a pending refund, whose lease the caller holds, as far as it can go now.

        A refund Stripe holds as pending comes back pending with its lease given up, so that
        the reconciler reads it again.
        """
        lease = refund.lease_expires_at
        try:
            driven = await self._drive(refund)
        except (ServiceUnavailable, StripeUnavailable, ProblemError) as exc:
            if isinstance(exc, ProblemError) and exc.status < 500:
                raise
            await self._release(refund.id, lease)
            if isinstance(exc, StripeUnavailable):
                raise PaymentProviderUnavailable(
                    "Stripe did not answer. The refund stays pending, its amount held on the "
                    "wallet; retry with the same Idempotency-Key, or it is completed "
                    "automatically.",
                    retry_after=5,
                    refund_id=str(refund.id),
                ) from exc
            raise
        if driven.status == RefundStatus.PENDING:
            await self._release(refund.id, lease)
        return driven

    async def _drive(self, refund: Refund) -> Refund:
        payment = await self._payment(refund.payment_id)
        hold_id = refund.hold_id
        if hold_id is None:
            try:
                hold_id = await self.wallet.hold(
                    user_id=payment.user_id,
                    amount=refund.amount,
                    currency=refund.currency,
                    reference=service.hold_reference(refund.id),
                )
            except (InsufficientFunds, WalletHasDebt) as exc:
                async with self.sessionmaker() as session, session.begin():
                    await service.mark_failed(session, refund.id, code=exc.type, message=exc.detail)
                raise
            refund = await self._record(refund.id, {"hold_id": hold_id})
            if refund.status != RefundStatus.PENDING:
                return refund
        async with self.hold_kept(hold_id):
            if payment.provider == PaymentProvider.PAYPAL:
                found = await self._at_paypal(refund, payment, hold_id)
                if isinstance(found, Refund):
                    return found
                return await self._apply(refund.id, hold_id, found)
            if refund.stripe_refund_id is None:
                assert payment.stripe_payment_intent_id is not None
                try:
                    stripe_refund = await self.stripe.create_refund(
                        refund_id=str(refund.id),
                        payment_id=str(payment.id),
                        payment_intent_id=payment.stripe_payment_intent_id,
                        amount=refund.amount,
                        reason=refund.reason,
                        idempotency_key=service.stripe_idempotency_key(refund.id),
                    )
                except StripeRefused as refusal:
                    await self._void_quietly(hold_id)
                    async with self.sessionmaker() as session, session.begin():
                        return await service.mark_failed(
                            session,
                            refund.id,
                            code=refusal.code or "refund_refused",
                            message=refusal.message,
                        )
                refund = await self._record(refund.id, {"stripe_refund_id": stripe_refund.id})
                if refund.status != RefundStatus.PENDING:
                    return refund
            else:
                try:
                    stripe_refund = await self.stripe.retrieve_refund(refund.stripe_refund_id)
                except StripeRefused as refusal:
                    # Stripe gave us this id; it cannot vanish. Leave it for an operator.
                    logger.error("refund %s: Stripe refund unreadable: %s", refund.id, refusal)
                    return refund
        return await self._apply(refund.id, hold_id, stripe_refund)

    async def _at_paypal(
        self, refund: Refund, payment: Payment, hold_id: str
    ) -> Refund | RefundState:
        """Refund the capture at PayPal (or read the refund back): its state, or the refund
        settled as failed when PayPal refuses."""
        try:
            if refund.paypal_refund_id is None:
                assert payment.paypal_capture_id is not None
                found = await self.paypal.refund_capture(
                    capture_id=payment.paypal_capture_id,
                    amount=refund.amount,
                    currency=refund.currency,
                    refund_id=str(refund.id),
                    request_id=service.stripe_idempotency_key(refund.id),
                )
                recorded = await self._record(refund.id, {"paypal_refund_id": found.id})
                if recorded.status != RefundStatus.PENDING:
                    return recorded
            else:
                found = await self.paypal.get_refund(refund.paypal_refund_id)
        except PayPalRefused as refusal:
            if refund.paypal_refund_id is not None:
                logger.error("refund %s: PayPal refund unreadable: %s", refund.id, refusal)
                return refund
            await self._void_quietly(hold_id)
            async with self.sessionmaker() as session, session.begin():
                return await service.mark_failed(
                    session,
                    refund.id,
                    code=(refusal.code or "refund_refused").lower(),
                    message=refusal.message,
                )
        except (PayPalUnavailable, PayPalNotConfigured) as exc:
            raise PaymentProviderUnavailable(
                "PayPal did not answer. The refund stays pending, its amount held on the "
                "wallet; retry with the same Idempotency-Key, or it is completed automatically.",
                retry_after=5,
                refund_id=str(refund.id),
            ) from exc
        return service.from_paypal(found)

    async def _apply(
        self, refund_id: uuid.UUID, hold_id: str, stripe_refund: RefundState
    ) -> Refund:
        """Move the wallet as Stripe's answer says, then the refund (its events do it too)."""
        if stripe_refund.status == service.STRIPE_SUCCEEDED:
            try:
                await self.wallet.capture(hold_id)
            except HoldNotCapturable:
                # The hold is gone (it lapsed while nothing renewed it): `payment.refunded`
                # makes the transactions service debit the wallet itself.
                logger.warning("hold %s of refund %s could not be captured", hold_id, refund_id)
        elif stripe_refund.status in service.STRIPE_FAILED:
            await self._void_quietly(hold_id)
        async with self.sessionmaker() as session, session.begin():
            refund, _ = await service.apply_stripe_state(session, refund_id, stripe_refund)
        return refund

    @asynccontextmanager
    async def hold_kept(self, hold_id: str) -> AsyncIterator[None]:
        """Renew the hold now and then until the block ends, so it never lapses under it."""
        keeper = asyncio.create_task(self._keep_renewing(hold_id))
        try:
            yield
        finally:
            keeper.cancel()
            with suppress(asyncio.CancelledError):
                await keeper

    async def _keep_renewing(self, hold_id: str) -> None:
        while True:
            renewed = await self.renew_hold(hold_id)
            if renewed is False:
                return
            delay = RENEW_MIN_SECONDS
            if isinstance(renewed, datetime):
                left = (renewed - datetime.now(UTC)).total_seconds()
                delay = max(left / RENEW_FRACTION, RENEW_MIN_SECONDS)
            await asyncio.sleep(delay)

    async def renew_hold(self, hold_id: str) -> datetime | bool:
        """Renew a refund's hold: its new expiry; False when it is gone; True when unknown."""
        try:
            return await self.wallet.renew(hold_id)
        except HoldNotCapturable:
            logger.warning("hold %s is no longer active; not renewed", hold_id)
            return False
        except ProblemError as exc:
            logger.warning("renewing hold %s failed: %s", hold_id, exc.detail)
            return True

    async def _release(self, refund_id: uuid.UUID, lease: datetime | None) -> None:
        if lease is None:
            return
        async with self.sessionmaker() as session, session.begin():
            await repository.release_lease(session, refund_id, lease)

    async def _payment(self, payment_id: uuid.UUID) -> Payment:
        async with self.sessionmaker() as session:
            return await payments_service.get_payment(session, payment_id)

    async def _record(self, refund_id: uuid.UUID, values: dict[str, str]) -> Refund:
        async with self.sessionmaker() as session, session.begin():
            updated = await repository.update_pending(session, refund_id, values, to_status=None)
            if updated is None:  # settled meanwhile by another path
                current = await repository.get(session, refund_id)
                assert current is not None
                return current
            return updated

    async def _void_quietly(self, hold_id: str) -> None:
        try:
            await self.wallet.void(hold_id)
        except ProblemError as exc:
            # The hold expires by itself; the refund fails either way.
            logger.warning("voiding hold %s failed: %s", hold_id, exc.detail)
