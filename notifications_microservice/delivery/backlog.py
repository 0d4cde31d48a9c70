"""The delivery backlog on /metrics: pending rows per channel and how old the oldest are.

Read from the database every BACKLOG_INTERVAL_SECONDS (every replica reports the same shared
backlog), so a scrape costs nothing and an alert can fire on a worker that falls behind.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from notifications_microservice.delivery import repository
from notifications_microservice.delivery.repository import ChannelBacklog
from notifications_microservice.models import Channel

BACKLOG_INTERVAL_SECONDS = 10.0
NONE_PENDING = ChannelBacklog(pending=0, oldest_pending_age=0.0, oldest_due_age=0.0)


@dataclass(frozen=True)
class BacklogGauges:
    """The backlog's series, labelled by channel, and the webhook failures by endpoint."""

    pending: Gauge
    oldest_pending_age: Gauge
    oldest_due_age: Gauge
    webhook_failures: Counter

    @classmethod
    def register(cls, registry: CollectorRegistry) -> BacklogGauges:
        """The gauges, in `registry` (an app's /metrics)."""
        return cls(
            pending=Gauge(
                "micropay_notifications_pending",
                "Notifications not sent or given up on yet.",
                ["channel"],
                registry=registry,
            ),
            oldest_pending_age=Gauge(
                "micropay_notifications_oldest_pending_age_seconds",
                "Age of the oldest pending notification (retries and emails awaiting an "
                "address included).",
                ["channel"],
                registry=registry,
            ),
            oldest_due_age=Gauge(
                "micropay_notifications_oldest_due_age_seconds",
                "How long the oldest notification a worker could send now has been due.",
                ["channel"],
                registry=registry,
            ),
            webhook_failures=webhook_failures_counter(registry),
        )

    def unregister(self, registry: CollectorRegistry) -> None:
        """Remove the gauges from `registry` (the app stops)."""
        for series in (
            self.pending,
            self.oldest_pending_age,
            self.oldest_due_age,
            self.webhook_failures,
        ):
            registry.unregister(series)

    def set(self, channel: str, backlog: ChannelBacklog) -> None:
        """Show one channel's backlog."""
        self.pending.labels(channel).set(backlog.pending)
        self.oldest_pending_age.labels(channel).set(backlog.oldest_pending_age)
        self.oldest_due_age.labels(channel).set(backlog.oldest_due_age)


def webhook_failures_counter(registry: CollectorRegistry) -> Counter:
    """Failed webhook attempts (an error answer, a timeout, no connection), by endpoint id."""
    return Counter(
        "micropay_webhook_failures",
        "Webhook deliveries that failed (a non-2xx answer, a timeout, no connection), by endpoint.",
        ["endpoint_id"],
        registry=registry,
    )


async def observe_backlog(
    sessionmaker: async_sessionmaker[AsyncSession], gauges: BacklogGauges
) -> None:
    """Read the backlog once and set the gauges of every channel."""
    async with sessionmaker() as session:
        found = await repository.backlog(session)
    for channel in Channel:
        gauges.set(channel, found.get(channel, NONE_PENDING))
