"""Drives a refund: wallet hold, Stripe refund, capture — each step its own transaction.

1. reserve the amount on the payment (row locked) and commit the refund as `pending`;
2. place a hold on the wallet (transactions service; the reference is the refund id, so a
   retry finds the same hold). A wallet that cannot cover it → 409 `insufficient_funds`, the
   refund fails and Stripe is never called;
3. refund at Stripe with an idempotency key derived from the refund id. Stripe refuses → the
   hold is voided and the refund fails;
4. capture the hold (the wallet's debit) and settle the refund with `payment.refunded`.

Each step records its result (hold id, Stripe refund id) before the next, so a retry with the
same Idempotency-Key, or the reconciler, resumes where a crash or an outage stopped it.
"""

from __future__ import annotations

import logging
import uuid

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from micropay_common.errors import ProblemError, ServiceUnavailable
from micropay_common.idempotency import KeyedRequest, Submission, keyed_resources
from micropay_common.security import AuthenticatedUser
from payment_microservice.models import Payment, Refund, RefundStatus
from payment_microservice.payments import service as payments_service
from payment_microservice.payments.exceptions import PaymentProviderUnavailable
from payment_microservice.refunds import repository, service
from payment_microservice.refunds.schemas import RefundCreate
from payment_microservice.settings import PaymentSettings
from payment_microservice.stripe_api import StripeApi, StripeRefused, StripeUnavailable
from payment_microservice.wallet import HoldNotCapturable, InsufficientFunds, WalletClient

logger = logging.getLogger("micropay.payment.refunds")


class RefundDriver:
    """Creates refunds and drives them through the wallet and Stripe."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        stripe: StripeApi,
        wallet: WalletClient,
        settings: PaymentSettings,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.stripe = stripe
        self.wallet = wallet
        self.settings = settings

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
        """Take a pending refund, whose lease the caller holds, as far as it can go."""
        lease = refund.lease_expires_at
        try:
            return await self._drive(refund)
        except (ServiceUnavailable, StripeUnavailable, ProblemError) as exc:
            if isinstance(exc, ProblemError) and exc.status < 500:
                raise
            async with self.sessionmaker() as session, session.begin():
                if lease is not None:
                    await repository.release_lease(session, refund.id, lease)
            if isinstance(exc, StripeUnavailable):
                raise PaymentProviderUnavailable(
                    "Stripe did not answer. The refund stays pending; retry with the same "
                    "Idempotency-Key, or it is completed automatically.",
                    retry_after=5,
                    refund_id=str(refund.id),
                ) from exc
            raise

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
            except InsufficientFunds as exc:
                async with self.sessionmaker() as session, session.begin():
                    await service.mark_failed(
                        session, refund.id, code=service.INSUFFICIENT_FUNDS, message=exc.detail
                    )
                raise
            refund = await self._record(refund.id, {"hold_id": hold_id})
            if refund.status != RefundStatus.PENDING:
                return refund
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
        captured: str | None = hold_id
        try:
            await self.wallet.capture(hold_id)
        except HoldNotCapturable:
            # The hold expired while Stripe was down: the transactions service debits the
            # wallet itself on a `payment.refunded` without a hold.
            logger.warning("hold %s of refund %s could not be captured", hold_id, refund.id)
            captured = None
        async with self.sessionmaker() as session, session.begin():
            return await service.settle(session, refund.id, captured_hold_id=captured)

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
