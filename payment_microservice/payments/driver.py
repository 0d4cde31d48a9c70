"""Drives a payment through Stripe: each step is its own short database transaction.

`POST /payments` cannot run in one transaction: the payment must be committed as `processing`
*before* Stripe is called, so that a crash between the call and the update leaves a row that a
retry or the reconciler finds and settles. So:

1. insert the payment (`processing`, keyed by the caller's Idempotency-Key, with a lease that
   says who is driving it) and commit — or find the one the key already made;
2. call Stripe with no transaction open, with the idempotency key derived from the payment id,
   so that every retry of the call (stripe-python's, the client's, the reconciler's) gets the
   same PaymentIntent and the card is never charged twice;
3. settle the payment from Stripe's answer in a second transaction, with its event.

A retry with the same key and body replays a settled payment, re-drives a `processing` one
whose lease is free, and is told 409 `idempotency_key_in_use` while another request drives it.

A PayPal payment takes the same first step; the second creates a PayPal order (its
`PayPal-Request-Id` derived from the payment id) and the third records the approval link, the
payment `requires_action`. Once the buyer has approved, `confirm` (or a webhook, or the
reconciler) captures the order with its own request id, so whichever comes first captures it
once, and the capture's outcome settles the payment through the same status-guarded moves.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from micropay_common.idempotency import KeyedRequest, Submission, keyed_resources, leases
from micropay_common.security import AuthenticatedUser
from payment_microservice.models import Payment, PaymentProvider, PaymentStatus
from payment_microservice.payments import repository, service
from payment_microservice.payments.exceptions import (
    PaymentNotApproved,
    PaymentNotCancelable,
    PaymentNotConfirmable,
    PaymentProviderUnavailable,
)
from payment_microservice.payments.schemas import PaymentCreate
from payment_microservice.paypal_api import (
    OrderState,
    PayPalApi,
    PayPalNotConfigured,
    PayPalObjectMissing,
    PayPalRefused,
    PayPalUnavailable,
)
from payment_microservice.settings import PaymentSettings
from payment_microservice.stripe_api import StripeApi, StripeRefused, StripeUnavailable

logger = logging.getLogger("micropay.payment.driver")

# Stripe keeps idempotency keys for 24 hours; a payment Stripe never answered for is only
# confirmed again within that window, so that a late retry cannot become a second charge.
STRIPE_KEY_WINDOW_SECONDS = 23 * 3600
# PayPal keeps a request id for at least six hours; the same rule for creating an order.
PAYPAL_KEY_WINDOW_SECONDS = 5 * 3600

PAYPAL_SETTLED = (PaymentStatus.SUCCEEDED, PaymentStatus.FAILED, PaymentStatus.CANCELED)
# Capture refusals that say "not now" rather than "no": asked again later, never failed on.
PAYPAL_CAPTURE_RETRYABLE = frozenset({"ORDER_COMPLETION_IN_PROGRESS", "DUPLICATE_REQUEST_ID"})


class PaymentDriver:
    """Creates payments and drives them to Stripe's outcome."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        stripe: StripeApi,
        settings: PaymentSettings,
        paypal: PayPalApi,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.stripe = stripe
        self.settings = settings
        self.paypal = paypal

    async def submit(
        self, *, user_id: str, keyed: KeyedRequest, body: PaymentCreate
    ) -> Submission[Payment]:
        """Create the payment for this key (or find it) and drive it unless it is settled."""
        service.check_amount(self.settings, body)

        async def create(session: AsyncSession) -> Payment | None:
            await service.check_daily_top_ups(session, self.settings, user_id, body)
            return await repository.insert_if_new(
                session,
                {
                    "id": uuid.uuid4(),
                    "user_id": user_id,
                    "amount": body.amount,
                    "currency": body.currency,
                    "status": PaymentStatus.PROCESSING,
                    "provider": body.provider,
                    "payment_method": body.payment_method,
                    "return_url": str(body.return_url) if body.return_url else None,
                    "cancel_url": str(body.cancel_url) if body.cancel_url else None,
                    "description": body.description,
                    "idempotency_key": keyed.key,
                    "request_hash": keyed.fingerprint,
                    "lease_expires_at": leases.lease_until(self.settings.lease_seconds),
                },
            )

        return await keyed_resources.submit(
            self.sessionmaker,
            Payment,
            keyed,
            find=lambda session: repository.get_by_key(session, user_id, keyed.key),
            create=create,
            drive=self.drive,
            resumable=(PaymentStatus.PROCESSING,),
            lease_seconds=self.settings.lease_seconds,
            conflict_detail=(
                "This Idempotency-Key was first used with a different request body; keys are "
                "for retrying the same request. Use a new key for a different payment."
            ),
        )

    async def drive(self, payment: Payment) -> Payment:
        """Ask Stripe about a payment this caller holds the lease of, and settle it.

        Raises PaymentProviderUnavailable (503) when Stripe gives no answer; the payment then
        stays `processing` for a retry or the reconciler.
        """
        if payment.provider == PaymentProvider.PAYPAL:
            return await self._drive_paypal(payment)
        lease = payment.lease_expires_at
        try:
            if payment.stripe_payment_intent_id:
                intent = await self.stripe.retrieve_intent(payment.stripe_payment_intent_id)
            else:
                intent = await self.stripe.create_and_confirm(
                    payment_id=str(payment.id),
                    user_id=payment.user_id,
                    amount=payment.amount,
                    currency=payment.currency,
                    payment_method=str(payment.payment_method),
                    description=payment.description,
                    idempotency_key=service.stripe_idempotency_key(payment.id),
                )
        except StripeRefused as refusal:
            async with self.sessionmaker() as session, session.begin():
                return await service.apply_refusal(session, payment.id, refusal)
        except StripeUnavailable as exc:
            async with self.sessionmaker() as session, session.begin():
                if lease is not None:
                    await repository.release_lease(session, payment.id, lease)
            raise PaymentProviderUnavailable(
                "Stripe did not answer. The payment stays processing; retry with the same "
                "Idempotency-Key, or it is settled automatically once Stripe answers.",
                retry_after=5,
                payment_id=str(payment.id),
            ) from exc
        async with self.sessionmaker() as session, session.begin():
            settled = await service.apply_intent(session, payment.id, intent)
            if settled.status in repository.UNSETTLED and lease is not None:
                await repository.release_lease(session, payment.id, lease)
        return settled

    async def reconcile(self, payment: Payment) -> Payment:
        """Settle an unsettled payment (whose lease the caller holds) from what Stripe knows.

        A `processing` payment is driven again (the same PaymentIntent, by id or by idempotency
        key). One awaiting 3-D Secure is re-read, and cancelled at Stripe once nobody has
        completed it within PAYMENT_ACTION_TIMEOUT_SECONDS.
        """
        if payment.provider == PaymentProvider.PAYPAL:
            return await self._reconcile_paypal(payment)
        age = (datetime.now(UTC) - payment.created_at).total_seconds()
        if payment.status == PaymentStatus.PROCESSING:
            if payment.stripe_payment_intent_id is None and age > STRIPE_KEY_WINDOW_SECONDS:
                # Stripe never answered for a day; confirming now could charge a second time
                # if the first attempt did reach it. A late webhook still settles it.
                async with self.sessionmaker() as session, session.begin():
                    return await service.mark_failed(
                        session,
                        payment.id,
                        code="stripe_unreachable",
                        message="Stripe could not be reached to confirm the payment.",
                        decline_code=None,
                        links={},
                    )
            return await self.drive(payment)
        assert payment.stripe_payment_intent_id is not None
        lease = payment.lease_expires_at
        try:
            intent = await self.stripe.retrieve_intent(payment.stripe_payment_intent_id)
            if intent.status == "requires_action" and (
                age > self.settings.payment_action_timeout_seconds
            ):
                intent = await self.stripe.cancel_intent(
                    intent.id, idempotency_key=f"micropay-cancel-{payment.id}"
                )
        except (StripeUnavailable, StripeRefused) as exc:
            async with self.sessionmaker() as session, session.begin():
                if lease is not None:
                    await repository.release_lease(session, payment.id, lease)
            raise PaymentProviderUnavailable(f"Stripe: {exc}") from exc
        async with self.sessionmaker() as session, session.begin():
            settled = await service.apply_intent(session, payment.id, intent)
            if settled.status in repository.UNSETTLED and lease is not None:
                await repository.release_lease(session, payment.id, lease)
        return settled

    # --- PayPal ------------------------------------------------------------------------------

    async def _drive_paypal(self, payment: Payment) -> Payment:
        """Create the payment's PayPal order (or read it back) and record its approval link."""
        lease = payment.lease_expires_at
        try:
            if payment.paypal_order_id:
                order = await self.paypal.get_order(payment.paypal_order_id)
            else:
                assert payment.return_url is not None
                assert payment.cancel_url is not None
                order = await self.paypal.create_order(
                    payment_id=str(payment.id),
                    amount=payment.amount,
                    currency=payment.currency,
                    description=payment.description,
                    return_url=payment.return_url,
                    cancel_url=payment.cancel_url,
                    request_id=service.paypal_request_id(payment.id, "order"),
                )
        except PayPalRefused as refusal:
            async with self.sessionmaker() as session, session.begin():
                return await service.mark_failed(
                    session,
                    payment.id,
                    code=(refusal.code or "paypal_refused").lower(),
                    message=refusal.message,
                    decline_code=None,
                    links={},
                )
        except (PayPalUnavailable, PayPalNotConfigured) as exc:
            await self._release(payment, lease)
            raise PaymentProviderUnavailable(
                "PayPal did not answer. The payment stays processing; retry with the same "
                "Idempotency-Key, or it is settled automatically once PayPal answers.",
                retry_after=5,
                payment_id=str(payment.id),
            ) from exc
        return await self._settle(payment, order, lease)

    async def visible(self, user: AuthenticatedUser, payment_id: uuid.UUID) -> Payment:
        """A payment the caller may see (else PaymentNotFound), read in a short transaction."""
        async with self.sessionmaker() as session:
            return await service.get_visible(session, user, payment_id)

    async def confirm(self, payment: Payment) -> Payment:
        """Capture an approved PayPal order and settle the payment; harmless to repeat.

        Raises PaymentNotApproved (409) while the buyer has not approved at PayPal.
        """
        if payment.provider != PaymentProvider.PAYPAL:
            raise PaymentNotConfirmable(
                "Only a PayPal payment is confirmed here; a card payment completes its 3-D "
                "Secure with Stripe.js.",
                payment_id=str(payment.id),
            )
        if payment.status in PAYPAL_SETTLED or payment.paypal_order_id is None:
            return payment
        return await self._capture_or_read(payment, payment.paypal_order_id)

    async def cancel(self, payment: Payment) -> Payment:
        """Cancel a PayPal payment whose buyer went back without paying (idempotent).

        PayPal is asked first: a payment it captured meanwhile succeeds instead.
        """
        if payment.status == PaymentStatus.CANCELED:
            return payment
        if payment.provider != PaymentProvider.PAYPAL or payment.status in PAYPAL_SETTLED:
            raise PaymentNotCancelable(
                f"The payment is {payment.status}; only a PayPal payment awaiting its buyer can "
                "be canceled.",
                payment_id=str(payment.id),
                payment_status=payment.status,
            )
        order = None
        if payment.paypal_order_id is not None:
            try:
                order = await self.paypal.get_order(payment.paypal_order_id)
            except PayPalObjectMissing:
                order = None
            except (PayPalRefused, PayPalUnavailable, PayPalNotConfigured) as exc:
                raise PaymentProviderUnavailable(
                    "PayPal did not answer; cancel again in a moment.", retry_after=5
                ) from exc
        async with self.sessionmaker() as session, session.begin():
            if order is not None and (order.capture_id or order.status == "COMPLETED"):
                return await service.apply_order(session, payment.id, order)
            # An approved order is never captured once the payment is canceled: PayPal lets
            # an uncaptured order expire, and no money moves.
            return await service.mark_canceled(session, payment.id)

    async def refresh_order(self, order_id: str, *, capture: bool) -> Payment | None:
        """For a webhook: our payment of the order, settled from PayPal (captured if approved
        and `capture`); None when the order is not ours."""
        async with self.sessionmaker() as session:
            payment = await service.payment_of_order(session, order_id)
        if payment is None:
            return None
        if payment.status in PAYPAL_SETTLED:
            return payment
        if capture:
            try:
                return await self._capture_or_read(payment, order_id)
            except PaymentNotApproved:
                return payment
        try:
            order = await self.paypal.get_order(order_id)
        except PayPalRefused:
            return payment
        except (PayPalUnavailable, PayPalNotConfigured) as exc:
            raise PaymentProviderUnavailable("PayPal did not answer.", retry_after=5) from exc
        return await self._settle(payment, order, None)

    async def _capture_or_read(self, payment: Payment, order_id: str) -> Payment:
        """Capture the order if it waits for it, else read it; then settle the payment."""
        try:
            order = await self.paypal.get_order(order_id)
            if order.status == "APPROVED" and payment.status != PaymentStatus.CANCELED:
                order = await self._capture(payment, order_id)
        except PayPalObjectMissing:
            async with self.sessionmaker() as session, session.begin():
                return await service.mark_canceled(session, payment.id)
        except PayPalRefused as refusal:
            async with self.sessionmaker() as session, session.begin():
                return await service.mark_failed(
                    session,
                    payment.id,
                    code=(refusal.code or "paypal_refused").lower(),
                    message=refusal.message,
                    decline_code=None,
                    links={},
                )
        except (PayPalUnavailable, PayPalNotConfigured) as exc:
            raise PaymentProviderUnavailable(
                "PayPal did not answer; confirm again in a moment.",
                retry_after=5,
                payment_id=str(payment.id),
            ) from exc
        if order.status in service.PAYPAL_AWAITING_BUYER:
            raise PaymentNotApproved(
                "The buyer has not approved the payment at PayPal yet; send them to "
                "`next_action.redirect_to_url.url`.",
                payment_id=str(payment.id),
            )
        return await self._settle(payment, order, None)

    async def _capture(self, payment: Payment, order_id: str) -> OrderState:
        """Capture an approved order; a refusal that PayPal's order contradicts (a capture
        made meanwhile by another caller) yields the order as it now is."""
        try:
            return await self.paypal.capture_order(
                order_id, request_id=service.paypal_request_id(payment.id, "capture")
            )
        except PayPalRefused as refusal:
            order = await self.paypal.get_order(order_id)
            if order.capture_status is not None:
                return order
            if refusal.code in PAYPAL_CAPTURE_RETRYABLE:
                raise PayPalUnavailable(f"capture: {refusal.code}") from refusal
            raise

    async def _reconcile_paypal(self, payment: Payment) -> Payment:
        """Settle a PayPal payment left unsettled: create its order again (same request id),
        capture it once approved, and cancel it once the buyer has had
        PAYMENT_ACTION_TIMEOUT_SECONDS to approve it."""
        age = (datetime.now(UTC) - payment.created_at).total_seconds()
        if payment.paypal_order_id is None:
            if age > PAYPAL_KEY_WINDOW_SECONDS:
                async with self.sessionmaker() as session, session.begin():
                    return await service.mark_failed(
                        session,
                        payment.id,
                        code="paypal_unreachable",
                        message="PayPal could not be reached to create the order.",
                        decline_code=None,
                        links={},
                    )
            return await self._drive_paypal(payment)
        lease = payment.lease_expires_at
        try:
            settled = await self._capture_or_read(payment, payment.paypal_order_id)
        except PaymentNotApproved:
            settled = payment
            if age > self.settings.payment_action_timeout_seconds:
                async with self.sessionmaker() as session, session.begin():
                    settled = await service.mark_canceled(session, payment.id)
        except PaymentProviderUnavailable:
            await self._release(payment, lease)
            raise
        if settled.status in repository.UNSETTLED:
            await self._release(payment, lease)
        return settled

    async def _settle(self, payment: Payment, order: OrderState, lease: datetime | None) -> Payment:
        async with self.sessionmaker() as session, session.begin():
            settled = await service.apply_order(session, payment.id, order)
            if settled.status in repository.UNSETTLED and lease is not None:
                await repository.release_lease(session, payment.id, lease)
        return settled

    async def _release(self, payment: Payment, lease: datetime | None) -> None:
        if lease is None:
            return
        async with self.sessionmaker() as session, session.begin():
            await repository.release_lease(session, payment.id, lease)
