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
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from micropay_common.idempotency import KeyedRequest, Submission, keyed_resources, leases
from payment_microservice.models import Payment, PaymentStatus
from payment_microservice.payments import repository, service
from payment_microservice.payments.exceptions import PaymentProviderUnavailable
from payment_microservice.payments.schemas import PaymentCreate
from payment_microservice.settings import PaymentSettings
from payment_microservice.stripe_api import StripeApi, StripeRefused, StripeUnavailable

logger = logging.getLogger("micropay.payment.driver")

# Stripe keeps idempotency keys for 24 hours; a payment Stripe never answered for is only
# confirmed again within that window, so that a late retry cannot become a second charge.
STRIPE_KEY_WINDOW_SECONDS = 23 * 3600


class PaymentDriver:
    """Creates payments and drives them to Stripe's outcome."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        stripe: StripeApi,
        settings: PaymentSettings,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.stripe = stripe
        self.settings = settings

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
                    "payment_method": body.payment_method,
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
                    payment_method=payment.payment_method,
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
