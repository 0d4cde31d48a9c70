"""The delivery worker: leases due notifications, sends them, records what happened.

A pass claims a batch in one short transaction (one statement: FOR UPDATE SKIP LOCKED, oldest
first, a lease written on each row), reads what the batch's pushes and webhooks need (devices,
endpoints) in the same transaction, and commits, so no database transaction stays open while
anything is sent. The rows are then sent concurrently (at most DELIVERY_CONCURRENCY at once,
within the SES and SNS rates) and every outcome of the batch is recorded in one statement, only
for rows on which the worker still holds the lease (the `lease_token` fences a worker that lost
it). A worker that dies mid-send leaves its rows leased; when the lease runs out another worker
claims them again. No send starts unless it can finish before the lease ends, so two workers
never send one row at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import NoReturn

import httpx
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from micropay_common import telemetry
from micropay_common.jobs import run_periodically
from micropay_common.metrics import AwsCallMetrics
from notifications_microservice.aws import AwsClients
from notifications_microservice.delivery import repository
from notifications_microservice.delivery.aws_query import (
    CredentialSource,
    Endpoint,
    QueryClient,
    SesApi,
    SnsApi,
)
from notifications_microservice.delivery.backlog import (
    BACKLOG_INTERVAL_SECONDS,
    observe_backlog,
    webhook_failures_counter,
)
from notifications_microservice.delivery.email import EmailSender
from notifications_microservice.delivery.outcomes import (
    Calls,
    Deferred,
    Failed,
    Lease,
    Postponed,
    Result,
    Retry,
    Sent,
)
from notifications_microservice.delivery.push import PushSender
from notifications_microservice.delivery.quotas import SesQuota, TokenBucket
from notifications_microservice.delivery.repository import Claimed, EndpointSnapshot, OutcomeRow
from notifications_microservice.delivery.webhook import WebhookSender
from notifications_microservice.devices import service as devices_service
from notifications_microservice.models import NOTIFICATIONS_DUE_CHANNEL, Channel, NotificationStatus
from notifications_microservice.settings import NotificationsSettings
from notifications_microservice.state import NotificationsState
from notifications_microservice.webhooks import service as webhooks_service
from notifications_microservice.webhooks.secrets import WebhookSecrets
from notifications_microservice.webhooks.urls import Resolver, resolve_host

logger = logging.getLogger("micropay.notifications.delivery")

LAST_ERROR_MAX_CHARS = 1000
JITTER = 0.1  # retries spread over up to 10 % more than the scheduled delay


@dataclass
class Batch:
    """Claimed rows and what sending them needs, read in the claiming transaction."""

    lease: Lease
    rows: list[Claimed]
    devices: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    endpoints: dict[uuid.UUID, EndpointSnapshot] = field(default_factory=dict)


async def _read_context(
    session: AsyncSession, rows: Sequence[Claimed]
) -> tuple[dict[str, list[tuple[str, str]]], dict[uuid.UUID, EndpointSnapshot]]:
    """The devices of the rows' push users and the rows' webhook endpoints (a query each)."""
    push_users = {row.user_id for row in rows if row.channel == Channel.PUSH}
    endpoint_ids = {row.webhook_endpoint_id for row in rows if row.webhook_endpoint_id}
    devices = await devices_service.push_endpoints_of(session, push_users) if push_users else {}
    endpoints = await repository.endpoint_snapshots(session, endpoint_ids) if endpoint_ids else {}
    return devices, endpoints


def _sending(rows: Sequence[Claimed], channel: Channel) -> contextlib.AbstractContextManager[None]:
    """The span of one send, in the trace of the event that caused its (first) row.

    Pushes of several rows go out in shared SNS calls: the span continues the first row's trace
    and links the others'.
    """
    return telemetry.continued(
        rows[0].traceparent,
        f"notification send {channel}",
        kind=telemetry.SpanKind.CONSUMER,
        attributes={
            "micropay.notification.channel": str(channel),
            "micropay.notification.ids": [str(row.id) for row in rows],
            "micropay.notification.event_type": rows[0].event_type,
        },
        linked=[row.traceparent for row in rows[1:]],
    )


class DeliveryWorker:
    """Sends due notifications; any number of workers may run against one schema at once."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: NotificationsSettings,
        aws: AwsClients,
        secrets_box: WebhookSecrets,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        resolver: Resolver = resolve_host,
        rng: Callable[[], float] | None = None,
        ses_quota: SesQuota | None = None,
        sns_bucket: TokenBucket | None = None,
        webhook_failures: Counter | None = None,
        aws_calls: AwsCallMetrics | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.webhook_failures = webhook_failures or webhook_failures_counter(CollectorRegistry())
        self.calls = Calls(settings.delivery_concurrency)
        self.ses_quota = ses_quota or SesQuota(
            lambda: asyncio.to_thread(aws.ses.get_send_quota),
            refresh_seconds=settings.ses_quota_refresh_seconds,
            configured_rate=settings.ses_max_send_rate,
        )
        self.sns_bucket = sns_bucket or TokenBucket(settings.sns_publish_rate_per_second)
        self.aws_sends = QueryClient(
            CredentialSource(aws.credentials),
            timeout_seconds=settings.aws_timeout_seconds,
            connections=settings.delivery_concurrency,
            metrics=aws_calls,
        )
        ses = SesApi(self.aws_sends, Endpoint.of(aws.ses))
        sns = SnsApi(self.aws_sends, Endpoint.of(aws.sns))
        self.email = EmailSender(ses, settings, self.ses_quota, self.calls)
        self.push = PushSender(sns, settings, self.sns_bucket, self.calls)
        self.webhooks = WebhookSender(settings, secrets_box, transport=transport, resolver=resolver)
        # Jitter only spreads retries out; it needs no cryptographic quality.
        self._rng = rng or random.random

    @classmethod
    def from_app(cls, app: FastAPI) -> DeliveryWorker:
        """A worker using the app's database, settings, AWS clients and webhook secrets."""
        state = NotificationsState.of(app)
        return cls(
            state.sessionmaker,
            state.settings,
            state.aws,
            state.webhook_secrets,
            webhook_failures=state.backlog.webhook_failures,
            aws_calls=state.aws_calls,
        )

    async def claim(self) -> tuple[Lease, list[Claimed]]:
        """Lease a batch of due rows (committed before anything is sent)."""
        batch = await self.claim_batch()
        return batch.lease, batch.rows

    async def claim_batch(self) -> Batch:
        """Lease a batch of due rows, oldest first, with the devices and endpoints they need."""
        token = uuid.uuid4()
        lease = Lease.starting_now(token, self.settings.delivery_lease_seconds)
        async with self.sessionmaker() as session, session.begin():
            rows = await repository.claim_due(
                session,
                limit=self.settings.delivery_batch_size,
                lease_seconds=self.settings.delivery_lease_seconds,
                token=token,
            )
            devices, endpoints = await _read_context(session, rows)
        return Batch(lease, rows, devices, endpoints)

    async def run_once(self) -> int:
        """Claim one batch, send its rows concurrently, record every outcome; the batch size."""
        await self.ses_quota.refresh_if_due()
        batch = await self.claim_batch()
        if batch.rows:
            results = await self._send_batch(batch)
            await self._record_logged(list(zip(batch.rows, results, strict=True)))
        return len(batch.rows)

    async def deliver(self, row: Claimed, lease: Lease) -> Result:
        """Send one claimed row and record the outcome."""
        async with self.sessionmaker() as session:
            devices, endpoints = await _read_context(session, [row])
        (result,) = await self._send_batch(Batch(lease, [row], devices, endpoints))
        await self._record_logged([(row, result)])
        return result

    async def _send_batch(self, batch: Batch) -> list[Result]:
        lease = batch.lease
        results: dict[uuid.UUID, Result] = {}

        async def guarded(rows: Sequence[Claimed], send: Awaitable[list[Result]]) -> None:
            try:
                sent = await send
            except Exception as exc:
                logger.exception(
                    "sending notifications %s failed unexpectedly", [r.id for r in rows]
                )
                sent = [Result(Retry(f"internal error: {type(exc).__name__}"))] * len(rows)
            results.update(zip((row.id for row in rows), sent, strict=True))

        async def email(row: Claimed) -> list[Result]:
            with _sending([row], Channel.EMAIL):
                return [await self.email.send(row, lease)]

        async def webhook(row: Claimed) -> list[Result]:
            assert row.webhook_endpoint_id is not None
            endpoint = batch.endpoints[row.webhook_endpoint_id]
            async with self.calls.slots:
                with _sending([row], Channel.WEBHOOK):
                    return [await self.webhooks.send(row, endpoint, lease)]

        async def push(rows: list[Claimed]) -> list[Result]:
            if not rows:
                return []
            with _sending(rows, Channel.PUSH):
                return await self.push.send_many(rows, batch.devices, lease)

        pushes = [row for row in batch.rows if row.channel == Channel.PUSH]
        sends = [guarded(pushes, push(pushes))]
        for row in batch.rows:
            if row.channel == Channel.EMAIL:
                sends.append(guarded([row], email(row)))
            elif row.channel == Channel.WEBHOOK:
                sends.append(guarded([row], webhook(row)))
        await asyncio.gather(*sends)
        for result in results.values():
            if result.attempt is not None and not result.attempt.succeeded:
                self.webhook_failures.labels(str(result.attempt.endpoint_id)).inc()
        return [results[row.id] for row in batch.rows]

    async def _record_logged(self, sent: list[tuple[Claimed, Result]]) -> None:
        try:
            await self._record(sent)
        except Exception:
            # The leases run out and the rows are claimed again: sent at least once.
            logger.exception(
                "recording the outcomes of notifications %s failed", [row.id for row, _ in sent]
            )

    async def _record(self, sent: list[tuple[Claimed, Result]]) -> None:
        outcomes = [self._outcome_row(row, result.outcome) for row, result in sent]
        attempts = [(row.id, row.attempts, r.attempt) for row, r in sent if r.attempt is not None]
        async with self.sessionmaker() as session, session.begin():
            for _, result in sent:
                for endpoint_arn, reason in result.disabled_devices:
                    await devices_service.disable_endpoint(session, endpoint_arn, reason)
            if attempts:
                await repository.log_attempts(session, attempts)
            for row, result in sent:
                if result.disable_endpoint is not None and row.webhook_endpoint_id is not None:
                    await webhooks_service.disable_endpoint(
                        session, row.webhook_endpoint_id, result.disable_endpoint
                    )
            held = await repository.record_outcomes(session, outcomes)
        for row, result in sent:
            if row.id not in held:
                logger.warning(
                    "lost the lease of notification %s before recording %s",
                    row.id,
                    type(result.outcome).__name__,
                )

    def _outcome_row(
        self, row: Claimed, outcome: Sent | Retry | Failed | Deferred | Postponed
    ) -> OutcomeRow:
        if isinstance(outcome, Sent):
            return OutcomeRow(
                row,
                status=NotificationStatus.SENT,
                clear_error=True,
                delivered_to=list(outcome.delivered_to),
                provider_message_id=outcome.provider_message_id,
            )
        if isinstance(outcome, Failed):
            logger.warning("%s notification %s failed: %s", row.channel, row.id, outcome.reason)
            return self._failed(row, outcome.reason)
        if isinstance(outcome, Deferred):
            return OutcomeRow(row, attempts_delta=-1, delivered_to=list(outcome.delivered_to))
        if isinstance(outcome, Postponed):
            delay = outcome.delay * (1 + JITTER * self._rng())
            logger.warning(
                "%s notification %s postponed %.0fs: %s", row.channel, row.id, delay, outcome.error
            )
            return OutcomeRow(
                row,
                attempts_delta=-1,
                delay=delay,
                last_error=outcome.error[:LAST_ERROR_MAX_CHARS],
                delivered_to=list(outcome.delivered_to),
            )
        return self._retry_or_fail(row, outcome)

    @staticmethod
    def _failed(row: Claimed, reason: str) -> OutcomeRow:
        return OutcomeRow(
            row, status=NotificationStatus.FAILED, last_error=reason[:LAST_ERROR_MAX_CHARS]
        )

    def _retry_or_fail(self, row: Claimed, outcome: Retry) -> OutcomeRow:
        schedule = (
            self.settings.webhook_retry_schedule
            if row.channel == Channel.WEBHOOK
            else self.settings.delivery_retry_schedule
        )
        error = outcome.error[:LAST_ERROR_MAX_CHARS]
        if row.attempts > len(schedule):
            reason = f"gave up after {row.attempts} attempts; last error: {error}"
            logger.warning("%s notification %s failed: %s", row.channel, row.id, reason)
            return self._failed(row, reason)
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
        return OutcomeRow(
            row, delay=delay, last_error=error, delivered_to=list(outcome.delivered_to)
        )

    async def delivery_pass(self) -> bool:
        """One batch; True when it was full, so more rows are likely due."""
        sent = await self.run_once()
        if sent >= self.settings.delivery_batch_size:
            return True
        if sent:
            # Rows that come due meanwhile wake the next pass as soon as the rest is over.
            await asyncio.sleep(self.settings.delivery_gather_seconds)
        return False

    async def run(self, wake: asyncio.Event | None = None) -> NoReturn:
        """Deliver forever: straight on after a full batch, else when woken or polled."""
        await run_periodically(
            "notification delivery",
            self.delivery_pass,
            interval_seconds=self.settings.delivery_poll_interval_seconds,
            wake=wake,
        )

    async def aclose(self) -> None:
        """Release the HTTP connection pools."""
        await self.webhooks.aclose()
        await self.aws_sends.aclose()


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


async def backlog_metrics_job(app: FastAPI) -> None:
    """Background job: keep the delivery backlog's gauges on /metrics current."""
    state = NotificationsState.of(app)

    async def observe() -> bool:
        await observe_backlog(state.sessionmaker, state.backlog)
        return False

    await run_periodically(
        "notification backlog metrics", observe, interval_seconds=BACKLOG_INTERVAL_SECONDS
    )
