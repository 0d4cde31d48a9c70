"""Reconciliation: payments and refunds left unsettled are settled from what Stripe knows.

A payment stays `processing` when Stripe did not answer (or the process died mid-call), and
`requires_action` while 3-D Secure is pending; a refund stays `pending` when Stripe or the
wallet did not answer, or while Stripe holds the refund as pending. Each pass first renews the
wallet hold of every pending refund (so no hold lapses under a refund in flight, however long
Stripe is down, as long as RECONCILE_INTERVAL_SECONDS is well below the wallet's
HOLD_TTL_SECONDS), then takes the ones untouched for RECONCILE_MIN_AGE_SECONDS, takes each
one's lease (so a request or another replica driving it is never doubled), and drives it with
the same Stripe idempotency keys as the request did (a refund Stripe has is read back from
Stripe), so each settles exactly once.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from micropay_common.errors import ProblemError
from payment_microservice.models import RefundStatus
from payment_microservice.payments import service as payments_service
from payment_microservice.payments.driver import PaymentDriver
from payment_microservice.reconciliation.schemas import ReconcileReport
from payment_microservice.refunds import service as refunds_service
from payment_microservice.refunds.driver import RefundDriver
from payment_microservice.settings import PaymentSettings

logger = logging.getLogger("micropay.payment.reconciliation")


class Reconciler:
    """One reconciliation pass at a time per call; any number of replicas may run it."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        payments: PaymentDriver,
        refunds: RefundDriver,
        settings: PaymentSettings,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.payments = payments
        self.refunds = refunds
        self.settings = settings

    async def run_once(self, min_age_seconds: float | None = None) -> ReconcileReport:
        """Settle what can be settled now; what cannot waits for the next pass."""
        age = (
            self.settings.reconcile_min_age_seconds if min_age_seconds is None else min_age_seconds
        )
        batch = self.settings.reconcile_batch_size
        lease = self.settings.lease_seconds
        report = ReconcileReport()
        report.holds_renewed = await self.renew_refund_holds()
        async with self.sessionmaker() as session:
            payment_ids = await payments_service.stale_unsettled(
                session, older_than_seconds=age, limit=batch
            )
            refund_ids = await refunds_service.stale_pending(
                session, older_than_seconds=age, limit=batch
            )
        for payment_id in payment_ids:
            async with self.sessionmaker() as session, session.begin():
                claimed = await payments_service.claim_unsettled(session, payment_id, lease)
            if claimed is None:
                continue
            report.payments_checked += 1
            try:
                settled = await self.payments.reconcile(claimed)
            except ProblemError as exc:
                report.errors += 1
                logger.warning("payment %s not reconciled: %s", payment_id, exc.detail)
                continue
            if settled.status != claimed.status:
                report.payments_settled += 1
        for refund_id in refund_ids:
            async with self.sessionmaker() as session, session.begin():
                claimed_refund = await refunds_service.claim_pending(session, refund_id, lease)
            if claimed_refund is None:
                continue
            report.refunds_checked += 1
            try:
                refund = await self.refunds.drive(claimed_refund)
            except ProblemError as exc:
                if exc.status >= 500:
                    report.errors += 1
                    logger.warning("refund %s not reconciled: %s", refund_id, exc.detail)
                    continue
                # A 4xx (the wallet cannot cover it) settles the refund as failed.
                report.refunds_settled += 1
                continue
            if refund.status != RefundStatus.PENDING:
                report.refunds_settled += 1
        if report.payments_checked or report.refunds_checked:
            logger.info("reconciliation pass: %s", report.model_dump())
        return report

    async def renew_refund_holds(self) -> int:
        """Renew the wallet hold of every pending refund; how many were renewed."""
        renewed = 0
        after = None
        while True:
            async with self.sessionmaker() as session:
                page = await refunds_service.pending_holds(
                    session, after=after, limit=self.settings.reconcile_batch_size
                )
            for _, hold_id in page:
                if isinstance(await self.refunds.renew_hold(hold_id), datetime):
                    renewed += 1
            if len(page) < self.settings.reconcile_batch_size:
                return renewed
            after = page[-1][0]
