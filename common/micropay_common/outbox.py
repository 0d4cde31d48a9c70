"""Transactional outbox: publish events with the change, deliver them with retries.

`publish` writes one row per consumer in the caller's transaction, so an event exists exactly
when the change that caused it was committed. `OutboxRelay` (run by `outbox_relay_job` in the
producer) posts each row to the consumer's `/internal/events` until it answers 2xx; the
consumer's inbox makes repeats harmless, so delivery is at least once and the effect exactly once.

Every write to an outbox is announced on its schema's `outbox_channel` by the table's own
statement trigger (`outbox_announce`, revision 0012), delivered at commit, whoever wrote the rows
(`publish`, or a SQL function of a hot path), so the relay of any replica runs within moments of
the commit (`micropay_common.wakeup`); its poll interval
(OUTBOX_POLL_INTERVAL_SECONDS) is only the safety net for a lost notification and the clock of
retries. The relay claims and sends each consumer's rows apart, so a slow consumer never holds
up the events of another. After each batch it announces on `outbox_attempted_channel`, which
lets a request wait, bounded, until its event has been offered to a consumer
(`wait_attempted`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NoReturn

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy import bindparam, func, literal, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from micropay_common import telemetry
from micropay_common.errors import ProblemError
from micropay_common.events import (
    EVENTS_PATH,
    Event,
    EventEnvelope,
    consumers_of,
    events_produced_by,
)
from micropay_common.http import ServiceClient
from micropay_common.jobs import backoff_delay, run_periodically, wait_until_set
from micropay_common.request_context import new_request_id, request_id_var
from micropay_common.service_auth import ServiceTokenProvider
from micropay_common.services import SERVICES
from micropay_common.settings import ServiceSettings
from micropay_common.state import AppState
from micropay_common.tables import OutboxStatus, outbox
from micropay_common.wakeup import Listener

logger = logging.getLogger("micropay.outbox")

LAST_ERROR_MAX_CHARS = 1000


# Built once: a statement built per call costs a compilation every time.
_INSERT_EVENT = insert(outbox).on_conflict_do_nothing(index_elements=["event_id", "consumer"])


_OUTBOX_CHANNEL = "micropay_outbox_"
_ATTEMPTED_CHANNEL = "micropay_outbox_attempted_"


def outbox_channel(schema: str) -> str:
    """The channel a commit that wrote outbox rows in `schema` is announced on."""
    return _OUTBOX_CHANNEL + schema


def outbox_attempted_channel(schema: str) -> str:
    """The channel a relay of `schema` announces on after it tried to deliver a batch."""
    return _ATTEMPTED_CHANNEL + schema


def _announce_in_schema(prefix: str) -> Any:
    # The session's schema (its search path) names the channel: the writer need not know it.
    return select(func.pg_notify(literal(prefix) + func.current_schema(), literal("")))


_ANNOUNCE_ATTEMPTED = _announce_in_schema(_ATTEMPTED_CHANNEL)


def _claim(*conditions: Any) -> Any:
    """Up to `batch_size` due rows, oldest first, locked; rows another relay holds skipped."""
    return (
        select(
            outbox.c.id,
            outbox.c.event_id,
            outbox.c.event_type,
            outbox.c.consumer,
            outbox.c.payload,
            outbox.c.attempts,
        )
        .where(
            outbox.c.status == OutboxStatus.PENDING,
            outbox.c.next_attempt_at <= func.now(),
            *conditions,
        )
        .order_by(outbox.c.id)
        .limit(bindparam("batch_size"))
        .with_for_update(skip_locked=True)
    )


_CLAIM_ANY = _claim()
_MARK_DELIVERED = (
    update(outbox)
    .where(outbox.c.id.in_(bindparam("delivered_ids", expanding=True)))
    .values(
        status=OutboxStatus.DELIVERED,
        attempts=outbox.c.attempts + 1,
        delivered_at=func.clock_timestamp(),
    )
)
_CLAIM_FOR_CONSUMER = _claim(outbox.c.consumer == bindparam("for_consumer"))


async def publish(
    session: AsyncSession, event: Event, *, event_id: uuid.UUID | None = None
) -> EventEnvelope:
    """Write `event` for each of its consumers in the caller's transaction (never commits)."""
    envelope = EventEnvelope.of(event, event_id=event_id)
    payload = envelope.model_dump(mode="json")
    # A caller that derives event_id from its own state (say, one per payment) may publish
    # again safely: the unique (event_id, consumer) key keeps the first row, even across
    # concurrent transactions, so the consumer never sees two events for one fact.
    rows = [
        {
            "event_id": envelope.id,
            "event_type": envelope.type,
            "consumer": consumer,
            "payload": payload,
        }
        for consumer in event.consumers
    ]
    # The outbox's trigger announces the rows at commit (never on rollback): no second statement.
    await session.execute(_INSERT_EVENT, rows[0] if len(rows) == 1 else rows)
    return envelope


@dataclass(frozen=True)
class _Claimed:
    id: int
    event_id: uuid.UUID
    event_type: str
    consumer: str
    payload: dict[str, Any]
    attempts: int


@dataclass(frozen=True)
class BatchResult:
    """What one relay pass did."""

    claimed: int
    delivered: int


class OutboxRelay:
    """Delivers due outbox rows; any number of relays may run against one schema at once."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: ServiceSettings,
        tokens: ServiceTokenProvider,
        *,
        rng: Callable[[], float] | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.tokens = tokens
        # Jitter only spreads retries out; it needs no cryptographic quality.
        self._rng = rng or random.random
        self._clients: dict[str, ServiceClient] = {}

    @classmethod
    def from_app(cls, app: FastAPI) -> OutboxRelay:
        """A relay using the app's database, settings and service account."""
        state = AppState.of(app)
        return cls(state.sessionmaker, state.settings, state.service_tokens)

    async def run_once(self) -> int:
        """Deliver one batch of due rows; returns how many were delivered."""
        return (await self.relay_batch()).delivered

    async def relay_batch(self, consumer: str | None = None) -> BatchResult:
        """Claim up to a batch of due rows (of one consumer, if named), send them concurrently,
        record each outcome."""
        # Log in before claiming: an identity-provider outage must not burn delivery attempts.
        await self.tokens.token()
        params: dict[str, Any] = {"batch_size": self.settings.outbox_batch_size}
        claim = _CLAIM_ANY
        if consumer is not None:
            claim, params["for_consumer"] = _CLAIM_FOR_CONSUMER, consumer
        async with self.sessionmaker() as session, session.begin():
            # The row locks last until this transaction ends, i.e. for the slowest send of the
            # batch (bounded by the per-send timeout). Another relay skips locked rows instead
            # of waiting, so two replicas never post the same row at the same time.
            result = await session.execute(claim, params)
            rows = [_Claimed(**row._mapping) for row in result]
            if not rows:
                return BatchResult(claimed=0, delivered=0)
            errors = await asyncio.gather(*(self._send(row) for row in rows))
            delivered = [row.id for row, error in zip(rows, errors, strict=True) if error is None]
            if delivered:
                await session.execute(_MARK_DELIVERED, {"delivered_ids": delivered})
            for row, error in zip(rows, errors, strict=True):
                if error is not None:
                    await self._record_failure(session, row, error)
            await session.execute(_ANNOUNCE_ATTEMPTED)
        return BatchResult(claimed=len(rows), delivered=len(delivered))

    async def _send(self, row: _Claimed) -> str | None:
        """Post one row; None when the consumer accepted it, else why not."""
        # Each delivery is its own request for the consumer's logs; the event id ties retries.
        request_id_var.set(new_request_id())
        # The delivery joins the trace of the transaction that wrote the event; the consumer's
        # handling joins it through the request's traceparent header.
        with telemetry.continued(
            row.payload.get("traceparent"),
            f"outbox deliver {row.event_type}",
            kind=telemetry.SpanKind.PRODUCER,
            attributes={
                "messaging.system": "micropay.outbox",
                "messaging.operation.type": "send",
                "messaging.destination.name": row.consumer,
                "messaging.message.id": str(row.event_id),
                "micropay.outbox.attempt": row.attempts + 1,
            },
        ):
            error = await self._post(row)
            if error is not None:
                telemetry.mark_current_failed(error)
            return error

    async def _post(self, row: _Claimed) -> str | None:
        timeout = self.settings.http_timeout_seconds
        try:
            async with asyncio.timeout(timeout):
                response = await self._client(row.consumer).post(EVENTS_PATH, json=row.payload)
        except TimeoutError:
            return f"timed out after {timeout:g}s"
        except ProblemError as exc:
            return f"{exc.type}: {exc.detail}"
        except Exception as exc:
            logger.exception("sending event %s to %s failed", row.event_id, row.consumer)
            return f"{type(exc).__name__}: {exc}"
        if response.is_success:
            logger.debug("event %s delivered to %s", row.event_id, row.consumer)
            return None
        return f"HTTP {response.status_code}: {response.text}"

    async def _record_failure(self, session: AsyncSession, row: _Claimed, error: str) -> None:
        attempts = row.attempts + 1
        last_error = error[:LAST_ERROR_MAX_CHARS]
        if attempts >= self.settings.outbox_max_attempts:
            await session.execute(
                update(outbox)
                .where(outbox.c.id == row.id)
                .values(status=OutboxStatus.DEAD, attempts=attempts, last_error=last_error)
            )
            logger.warning(
                "event %s (%s) to %s is dead after %d attempts: %s",
                row.event_id,
                row.event_type,
                row.consumer,
                attempts,
                last_error,
                extra={"event_id": str(row.event_id), "consumer": row.consumer},
            )
            return
        delay = backoff_delay(
            attempts,
            base=self.settings.outbox_backoff_base_seconds,
            cap=self.settings.outbox_backoff_max_seconds,
            rng=self._rng,
        )
        await session.execute(
            update(outbox)
            .where(outbox.c.id == row.id)
            .values(
                attempts=attempts,
                last_error=last_error,
                next_attempt_at=func.clock_timestamp() + timedelta(seconds=delay),
            )
        )
        logger.info(
            "event %s to %s failed (attempt %d), retrying in %.1fs: %s",
            row.event_id,
            row.consumer,
            attempts,
            delay,
            last_error,
        )

    def _client(self, consumer: str) -> ServiceClient:
        client = self._clients.get(consumer)
        if client is None:
            client = ServiceClient(
                self.settings.service_url(consumer),
                self.tokens,
                timeout=self.settings.http_timeout_seconds,
            )
            self._clients[consumer] = client
        return client

    async def relay_pass(self, consumer: str | None = None) -> bool:
        """One batch (of one consumer, if named); True when more rows are likely due (a full
        batch that went through)."""
        result = await self.relay_batch(consumer)
        # A full batch that delivered nothing means the consumer is failing; retrying
        # at once would only spin on rows whose jittered delay happened to be near zero.
        return result.claimed >= self.settings.outbox_batch_size and result.delivered > 0

    async def run(self, wake: asyncio.Event | None = None, consumer: str | None = None) -> NoReturn:
        """Relay forever (one consumer's rows, if named): straight on after a full batch, else
        when woken or polled."""
        await run_periodically(
            "outbox relay" if consumer is None else f"outbox relay to {consumer}",
            lambda: self.relay_pass(consumer),
            interval_seconds=self.settings.outbox_poll_interval_seconds,
            wake=wake,
        )

    async def aclose(self) -> None:
        """Close the HTTP clients."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()


async def outbox_relay_job(app: FastAPI) -> None:
    """Background job for `create_service_app(background_jobs=[outbox_relay_job])`; it also
    keeps the outbox's gauges on /metrics current (`OutboxGauges`)."""
    state = AppState.of(app)
    channel = outbox_channel(state.schema)
    # One loop per consumer, each woken by every commit that writes events: a slow consumer
    # holds up only its own rows, never the wallet's credit behind a notification.
    consumers: Sequence[str | None] = consumers_of_schema(state.schema) or (None,)
    wakes = [await state.listener.subscribe(channel) for _ in consumers]
    relay = OutboxRelay.from_app(app)
    gauges = OutboxGauges.register(state.metrics_registry)
    known = [consumer for consumer in consumers if consumer is not None]

    async def observe() -> bool:
        await gauges.observe(state.sessionmaker, known)
        return False

    try:
        await asyncio.gather(
            *(relay.run(wake, consumer) for wake, consumer in zip(wakes, consumers, strict=True)),
            run_periodically(
                "outbox metrics", observe, interval_seconds=OUTBOX_METRICS_INTERVAL_SECONDS
            ),
        )
    finally:
        gauges.unregister(state.metrics_registry)
        for wake in wakes:
            state.listener.unsubscribe(channel, wake)
        await relay.aclose()


OUTBOX_METRICS_INTERVAL_SECONDS = 15.0


@dataclass(frozen=True)
class OutboxGauges:
    """The outbox on /metrics, per consumer: rows waiting, the age of the oldest, dead rows.

    Read from the database every OUTBOX_METRICS_INTERVAL_SECONDS (every replica reports the
    same shared outbox), through the partial indexes on pending and dead rows.
    """

    pending: Gauge
    oldest_pending_age: Gauge
    dead: Gauge

    @classmethod
    def register(cls, registry: CollectorRegistry) -> OutboxGauges:
        """The gauges, in `registry` (an app's /metrics)."""
        return cls(
            pending=Gauge(
                "micropay_outbox_pending",
                "Events not yet delivered to the consumer (retries included).",
                ["consumer"],
                registry=registry,
            ),
            oldest_pending_age=Gauge(
                "micropay_outbox_oldest_pending_age_seconds",
                "Age of the oldest event not yet delivered to the consumer (0 when none).",
                ["consumer"],
                registry=registry,
            ),
            dead=Gauge(
                "micropay_outbox_dead",
                "Events given up on after OUTBOX_MAX_ATTEMPTS; they wait for an operator.",
                ["consumer"],
                registry=registry,
            ),
        )

    def unregister(self, registry: CollectorRegistry) -> None:
        """Remove the gauges from `registry` (the job stops)."""
        for gauge in (self.pending, self.oldest_pending_age, self.dead):
            registry.unregister(gauge)

    async def observe(
        self, sessionmaker: async_sessionmaker[AsyncSession], consumers: Sequence[str]
    ) -> None:
        """Read the outbox once and set the gauges of every consumer (zero when it has none)."""
        async with sessionmaker() as session:
            rows = (await session.execute(_BACKLOG)).all()
        found = {row.consumer: row for row in rows}
        for consumer in sorted({*consumers, *found}):
            row = found.get(consumer)
            self.pending.labels(consumer).set(row.pending if row else 0)
            self.oldest_pending_age.labels(consumer).set(row.oldest_age or 0 if row else 0)
            self.dead.labels(consumer).set(row.dead if row else 0)


_BACKLOG = (
    select(
        outbox.c.consumer,
        func.count().filter(outbox.c.status == OutboxStatus.PENDING).label("pending"),
        func.coalesce(
            func.extract(
                "epoch",
                func.now()
                - func.min(outbox.c.created_at).filter(outbox.c.status == OutboxStatus.PENDING),
            ),
            0,
        ).label("oldest_age"),
        func.count().filter(outbox.c.status == OutboxStatus.DEAD).label("dead"),
    )
    .where(outbox.c.status.in_([OutboxStatus.PENDING, OutboxStatus.DEAD]))
    .group_by(outbox.c.consumer)
)


def consumers_of_schema(schema: str) -> tuple[str, ...]:
    """The consumers of the events the service owning `schema` produces (none if unknown)."""
    for name, service in SERVICES.items():
        if service.schema == schema:
            produced = events_produced_by(name)
            return tuple(sorted({consumer for t in produced for consumer in consumers_of(t)}))
    return ()


async def wait_attempted(
    listener: Listener,
    sessionmaker: async_sessionmaker[AsyncSession],
    schema: str,
    event_id: uuid.UUID,
    consumer: str,
    *,
    timeout_seconds: float,
) -> bool:
    """Wait until the relay has tried once to deliver a committed event to `consumer`.

    True once the row is delivered, or failed at least once (the consumer is down: waiting
    longer would not help this caller); False when the timeout passed first.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_seconds
    channel = outbox_attempted_channel(schema)
    attempted = await listener.subscribe(channel)
    try:
        while True:
            # Cleared before the read: a batch that ends during it wakes one more read.
            attempted.clear()
            async with sessionmaker() as session:
                row = (
                    await session.execute(
                        select(outbox.c.status, outbox.c.attempts).where(
                            outbox.c.event_id == event_id, outbox.c.consumer == consumer
                        )
                    )
                ).one_or_none()
            if row is None or row.status != OutboxStatus.PENDING or row.attempts > 0:
                return True
            if not await wait_until_set(attempted, deadline - loop.time()):
                return False
    finally:
        listener.unsubscribe(channel, attempted)
