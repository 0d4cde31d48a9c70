"""Background job: the ledger's invariant check, on a clock, for /metrics and its alert."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Gauge

from micropay_common.jobs import run_periodically
from transactions_microservice.ledger import service
from transactions_microservice.ledger.service import LedgerCheck
from transactions_microservice.state import TransactionsState

logger = logging.getLogger("micropay.transactions.ledger")


@dataclass(frozen=True)
class LedgerCheckGauges:
    """The outcome of the latest invariant check."""

    ok: Gauge
    violations: Gauge
    checked_at: Gauge

    @classmethod
    def register(cls, registry: CollectorRegistry) -> LedgerCheckGauges:
        """The gauges, in `registry` (an app's /metrics)."""
        return cls(
            ok=Gauge(
                "micropay_ledger_check_ok",
                "1 when the latest ledger invariant check found nothing wrong, else 0.",
                registry=registry,
            ),
            violations=Gauge(
                "micropay_ledger_check_violations",
                "Offenders the latest invariant check found, by invariant (up to 100 each).",
                ["invariant"],
                registry=registry,
            ),
            checked_at=Gauge(
                "micropay_ledger_check_timestamp_seconds",
                "When the latest invariant check ran (Unix time).",
                registry=registry,
            ),
        )

    def unregister(self, registry: CollectorRegistry) -> None:
        """Remove the gauges from `registry` (the job stops)."""
        for gauge in (self.ok, self.violations, self.checked_at):
            registry.unregister(gauge)

    def show(self, check: LedgerCheck) -> None:
        """Show one check's outcome."""
        self.ok.set(1 if check.ok else 0)
        for invariant, offenders in check.violations.items():
            self.violations.labels(invariant).set(len(offenders))
        self.checked_at.set(check.checked_at.timestamp())


async def ledger_check_job(app: FastAPI) -> None:
    """Every LEDGER_CHECK_INTERVAL_SECONDS, check the ledger's invariants and show the outcome.

    The check reads whole tables on one snapshot; the interval keeps its cost to a few reads
    an hour. A failing check is logged with what it found.
    """
    state = TransactionsState.of(app)
    gauges = LedgerCheckGauges.register(state.metrics_registry)

    async def run_check() -> bool:
        started = time.perf_counter()
        async with state.sessionmaker() as session:
            check = await service.check(session)
        gauges.show(check)
        if not check.ok:
            found = {name: len(rows) for name, rows in check.violations.items() if rows}
            logger.error(
                "ledger invariant check failed: %s",
                found,
                extra={"violations": check.violations, "counts": check.counts},
            )
        else:
            logger.debug("ledger check passed in %.2fs", time.perf_counter() - started)
        return False

    try:
        await run_periodically(
            "ledger check",
            run_check,
            interval_seconds=state.settings.ledger_check_interval_seconds,
            # Not while the replica starts up; the alert waits for the first outcome.
            first_run_after_seconds=min(30.0, state.settings.ledger_check_interval_seconds),
        )
    finally:
        gauges.unregister(state.metrics_registry)
