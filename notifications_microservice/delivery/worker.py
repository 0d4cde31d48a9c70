"""The delivery worker: leases due notifications, sends them, records what happened.

A pass claims a batch in one short transaction (FOR UPDATE SKIP LOCKED, then a lease written
on each row) and commits, so no database transaction stays open while anything is sent. Each
row is then sent and its outcome recorded in its own transaction, only while the worker still
holds the lease (the `lease_token` fences a worker that lost it). A worker that dies mid-send
leaves its rows leased; when the lease runs out another worker claims them again. No send
starts unless it can finish before the lease ends, so two workers never send one row at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Callable
from typing import NoReturn

import httpx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from micropay_common.jobs import run_periodically
from notifications_microservice.aws import AwsClients
from notifications_microservice.delivery import repository
from notifications_microservice.delivery.email import EmailSender
from notifications_microservice.delivery.outcomes import (
    Deferred,
    Failed,
    Lease,
    Postponed,
    Result,
    Retry,
    Sent,
)
from notifications_microservice.delivery.push import PushSender
from notifications_microservice.delivery.repository import Claimed
from notifications_microservice.delivery.webhook import WebhookSender
from notifications_microservice.devices import service as devices_service
from notifications_microservice.models import NOTIFICATIONS_DUE_CHANNEL, Channel
from notifications_microservice.settings import NotificationsSettings
from notifications_microservice.state import NotificationsState
from notifications_microservice.webhooks import service as webhooks_service
from notifications_microservice.webhooks.secrets import WebhookSecrets
from notifications_microservice.webhooks.urls import Resolver, resolve_host

logger = logging.getLogger("micropay.notifications.delivery")

LAST_ERROR_MAX_CHARS = 1000
JITTER = 0.1  # retries spread over up to 10 % more than the scheduled delay


class DeliveryWorker:
    """Sends due notifications; any number of workers may run against one schema at once."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: NotificationsSettings,
        aws: AwsClients,
        secrets_box: WebhookSecrets,
        *,
        http: httpx.AsyncClient | None = None,
        resolver: Resolver = resolve_host,
        rng: Callable[[], float] | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.email = EmailSender(aws.ses, settings)
        self.push = PushSender(aws.sns, settings)
        self.webhooks = WebhookSender(settings, secrets_box, http=http, resolver=resolver)
        # Jitter only spreads retries out; it needs no cryptographic quality.
        self._rng = rng or random.random

    @classmethod
    def from_app(cls, app: FastAPI) -> DeliveryWorker:
        """A worker using the app's database, settings, AWS clients and webhook secrets."""
        state = NotificationsState.of(app)
        return cls(state.sessionmaker, state.settings, state.aws, state.webhook_secrets)

    async def claim(self) -> tuple[Lease, list[Claimed]]:
        """Lease a batch of due rows (committed before anything is sent)."""
        token = uuid.uuid4()
        lease = Lease.starting_now(token, self.settings.delivery_lease_seconds)
        async with self.sessionmaker() as session, session.begin():
            rows = await repository.claim_due(
                session,
                limit=self.settings.delivery_batch_size,
                lease_seconds=self.settings.delivery_lease_seconds,
                token=token,
            )
        return lease, rows

    async def run_once(self) -> int:
        """Claim one batch, send its rows concurrently and record each; returns the batch size."""
        lease, rows = await self.claim()
        if rows:
            await asyncio.gather(*(self.deliver(row, lease) for row in rows))
        return len(rows)

    async def deliver(self, row: Claimed, lease: Lease) -> Result:
        """Send one claimed row and record the outcome."""
        try:
            result = await self._send(row, lease)
        except Exception as exc:
            logger.exception("sending notification %s failed unexpectedly", row.id)
            result = Result(Retry(f"internal error: {type(exc).__name__}"))
        try:
            await self._record(row, result)
        except Exception:
            # The lease runs out and the row is claimed again: sent at least once.
            logger.exception("recording the outcome of notification %s failed", row.id)
        return result

    async def _send(self, row: Claimed, lease: Lease) -> Result:
        if row.channel == Channel.EMAIL:
            return await self.email.send(row, lease)
        if row.channel == Channel.PUSH:
            async with self.sessionmaker() as session:
                devices = await devices_service.push_endpoints(session, row.user_id)
            return await self.push.send(row, devices, lease)
        assert row.webhook_endpoint_id is not None
        async with self.sessionmaker() as session:
            endpoint = await repository.endpoint_snapshot(session, row.webhook_endpoint_id)
        return await self.webhooks.send(row, endpoint, lease)

    async def _record(self, row: Claimed, result: Result) -> None:
        outcome = result.outcome
        async with self.sessionmaker() as session, session.begin():
            for endpoint_arn, reason in result.disabled_devices:
                await devices_service.disable_endpoint(session, endpoint_arn, reason)
            if result.attempt is not None:
                await repository.log_attempt(session, row.id, row.attempts, result.attempt)
            if result.disable_endpoint is not None and row.webhook_endpoint_id is not None:
                await webhooks_service.disable_endpoint(
                    session, row.webhook_endpoint_id, result.disable_endpoint
                )
            if isinstance(outcome, Sent):
                held = await repository.mark_sent(
                    session, row, outcome.provider_message_id, list(outcome.delivered_to)
                )
            elif isinstance(outcome, Failed):
                held = await repository.mark_failed(
                    session, row, outcome.reason[:LAST_ERROR_MAX_CHARS]
                )
                logger.warning("%s notification %s failed: %s", row.channel, row.id, outcome.reason)
            elif isinstance(outcome, Deferred):
                held = await repository.release(session, row, list(outcome.delivered_to))
            elif isinstance(outcome, Postponed):
                delay = outcome.delay * (1 + JITTER * self._rng())
                held = await repository.postpone(
                    session, row, delay, outcome.error[:LAST_ERROR_MAX_CHARS]
                )
                logger.warning(
                    "%s notification %s postponed %.0fs: %s",
                    row.channel,
                    row.id,
                    delay,
                    outcome.error,
                )
            else:
                held = await self._retry_or_fail(session, row, outcome)
        if not held:
            logger.warning(
                "lost the lease of notification %s before recording %s",
                row.id,
                type(outcome).__name__,
            )

    async def _retry_or_fail(self, session: AsyncSession, row: Claimed, outcome: Retry) -> bool:
        schedule = (
            self.settings.webhook_retry_schedule
            if row.channel == Channel.WEBHOOK
            else self.settings.delivery_retry_schedule
        )
        error = outcome.error[:LAST_ERROR_MAX_CHARS]
        if row.attempts > len(schedule):
            reason = f"gave up after {row.attempts} attempts; last error: {error}"
            logger.warning("%s notification %s failed: %s", row.channel, row.id, reason)
            return await repository.mark_failed(session, row, reason[:LAST_ERROR_MAX_CHARS])
        delay = schedule[row.attempts - 1] * (1 + JITTER * self._rng())
        if outcome.retry_after is not None:
            delay = max(delay, outcome.retry_after)
        logger.info(
            "%s notification %s failed (attempt %d), retrying in %.1fs: %s",
            row.channel,
            row.id,
            row.attempts,
            delay,
            error,
        )
        return await repository.schedule_retry(
            session, row, delay, error, list(outcome.delivered_to)
        )

    async def delivery_pass(self) -> bool:
        """One batch; True when it was full, so more rows are likely due."""
        return await self.run_once() >= self.settings.delivery_batch_size

    async def run(self, wake: asyncio.Event | None = None) -> NoReturn:
        """Deliver forever: straight on after a full batch, else when woken or polled."""
        await run_periodically(
            "notification delivery",
            self.delivery_pass,
            interval_seconds=self.settings.delivery_poll_interval_seconds,
            wake=wake,
        )

    async def aclose(self) -> None:
        """Release the HTTP connection pool."""
        await self.webhooks.aclose()


async def delivery_worker_job(app: FastAPI) -> None:
    """Background job for `create_service_app(background_jobs=[delivery_worker_job])`."""
    listener = NotificationsState.of(app).listener
    # Woken by the commit that made notifications due; the poll is the safety net.
    wake = await listener.subscribe(NOTIFICATIONS_DUE_CHANNEL)
    worker = DeliveryWorker.from_app(app)
    try:
        await worker.run(wake)
    finally:
        listener.unsubscribe(NOTIFICATIONS_DUE_CHANNEL, wake)
        await worker.aclose()
