"""Sending quotas: the token bucket keeps to its rate (on a clock of the test's own), SES's
MaxSendRate is read from GetSendQuota and paces the emails of a batch, and a throttling answer
from SES or SNS brings the message back later without counting an attempt."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from notifications_microservice.aws import build_clients
from notifications_microservice.delivery.quotas import SesQuota, TokenBucket
from notifications_microservice.delivery.worker import DeliveryWorker
from notifications_microservice.state import NotificationsState
from notifications_microservice.tests.helpers import (
    answer_with,
    emails_to,
    new_user,
    topic_publishes,
)


class FakeClock:
    """A clock that moves only when a caller sleeps; records when each sleeper wakes."""

    def __init__(self) -> None:
        self.now = 100.0
        self.wakes: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        wake = self.now + seconds
        self.wakes.append(wake)
        await asyncio.sleep(0)
        self.now = max(self.now, wake)


async def test_the_bucket_allows_its_burst_then_one_token_per_interval() -> None:
    clock = FakeClock()
    bucket = TokenBucket(4.0, burst=2, clock=clock, sleep=clock.sleep)
    waits = [bucket.reserve() for _ in range(6)]
    # Two at once (the burst), then one every quarter second, in the order they asked.
    assert waits == [0.0, 0.0, 0.25, 0.5, 0.75, 1.0]


async def test_concurrent_acquirers_share_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(2.0, burst=1, clock=clock, sleep=clock.sleep)
    await asyncio.gather(*(bucket.acquire() for _ in range(5)))
    assert sorted(clock.wakes) == [100.5, 101.0, 101.5, 102.0]
    assert clock.now == 102.0


async def test_an_idle_bucket_refills_only_up_to_its_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1.0, burst=3, clock=clock, sleep=clock.sleep)
    clock.now += 3600  # an hour idle saves no more than the burst
    assert [bucket.reserve() for _ in range(5)] == [0.0, 0.0, 0.0, 1.0, 2.0]


async def test_a_pause_holds_every_token_back() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10.0, burst=10, clock=clock, sleep=clock.sleep)
    bucket.pause(1.0)
    assert bucket.reserve() == pytest.approx(1.1)


async def test_ses_max_send_rate_comes_from_get_send_quota_and_paces_the_emails(
    app, send_event, admin, moto_endpoint
) -> None:
    state = NotificationsState.of(app)
    settings = state.settings.model_copy(update={"ses_max_send_rate": None})
    aws = build_clients(settings)
    # moto's reading is fixed (1/s, and a daily count shared by every test on the server):
    # SES's answer for an account allowed two a second.
    answer_with(
        aws.ses,
        "GetSendQuota",
        {"Max24HourSend": 50000.0, "MaxSendRate": 2.0, "SentLast24Hours": 10.0},
        times=2,
    )
    clock = FakeClock()
    reads: list[int] = []

    async def read_quota():
        reads.append(1)
        return await asyncio.to_thread(aws.ses.get_send_quota)

    quota = SesQuota(read_quota, refresh_seconds=60.0, clock=clock, sleep=clock.sleep)
    worker = DeliveryWorker(
        state.sessionmaker, settings, aws, state.webhook_secrets, ses_quota=quota
    )
    try:
        user_id, email = new_user()
        await send_event("user.registered", {"user_id": user_id, "email": email})
        for n in range(4):
            await send_event(
                "payment.succeeded",
                {"payment_id": f"pay_q{n}", "user_id": user_id, "amount": 100, "currency": "USD"},
            )
        await admin.execute(
            "UPDATE notifications.notifications SET status = 'sent' WHERE channel <> 'email'"
        )
        assert await worker.run_once() == 5
    finally:
        await worker.aclose()

    assert quota.bucket.rate == 2.0
    assert quota.sent_last_24_hours == 15.0  # the reading, plus what was sent since
    assert len(emails_to(moto_endpoint, email)) == 5
    # The first two emails at once (a burst of one second's rate), then one each half second.
    assert sorted(clock.wakes) == [100.5, 101.0, 101.5]
    # Read at the start (clock 100), and again only once the refresh period has passed.
    assert reads == [1]
    clock.now = 159.5
    await quota.refresh_if_due()
    assert reads == [1]
    clock.now = 160.0
    await quota.refresh_if_due()
    assert reads == [1, 1]


async def test_a_configured_rate_replaces_the_quota_reading() -> None:
    async def never() -> dict[str, Any]:
        raise AssertionError("GetSendQuota is not read when a rate is configured")

    quota = SesQuota(never, refresh_seconds=60.0, configured_rate=250.0)
    await quota.refresh_if_due()
    assert quota.bucket.rate == 250.0
    assert not quota.daily_quota_used_up()


async def test_a_used_up_daily_quota_holds_emails_without_burning_attempts(
    app, send_event, admin, moto_endpoint
) -> None:
    state = NotificationsState.of(app)
    settings = state.settings.model_copy(update={"ses_max_send_rate": None})
    aws = build_clients(settings)
    answer_with(
        aws.ses,
        "GetSendQuota",
        {"Max24HourSend": 200.0, "MaxSendRate": 14.0, "SentLast24Hours": 200.0},
        times=1,
    )
    worker = DeliveryWorker(state.sessionmaker, settings, aws, state.webhook_secrets)
    try:
        user_id, email = new_user()
        await send_event("user.registered", {"user_id": user_id, "email": email})
        await worker.run_once()
    finally:
        await worker.aclose()
    assert worker.ses_quota.bucket.rate == 14.0
    row = await attempts_of(admin, user_id, "email")
    assert (row["status"], row["attempts"], row["later"]) == ("pending", 0, True)
    assert row["last_error"] == "SES's 24-hour sending quota is used up"
    assert emails_to(moto_endpoint, email) == []


async def attempts_of(admin, user_id: str, channel: str):
    return await admin.fetchrow(
        "SELECT status, attempts, last_error, next_attempt_at > now() AS later"
        " FROM notifications.notifications WHERE user_id = $1 AND channel = $2",
        user_id,
        channel,
    )


async def test_ses_throttling_is_retried_without_burning_attempts(
    send_event, make_worker, admin, moto_endpoint, aws_edge
) -> None:
    edge, edge_url = aws_edge
    # More throttling answers than the retry schedule has attempts.
    throttled = edge.answer_with_error("SendEmail", "Throttling", times=5)
    worker = make_worker(aws_endpoint_url=edge_url)
    user_id, email = new_user()
    await send_event("user.registered", {"user_id": user_id, "email": email})
    for round_ in range(5):
        assert await worker.run_once() >= 1
        row = await attempts_of(admin, user_id, "email")
        assert (row["status"], row["attempts"], row["later"]) == ("pending", 0, True), round_
        assert row["last_error"].startswith("Throttling")
        await admin.execute(
            "UPDATE notifications.notifications SET next_attempt_at = now() WHERE user_id = $1",
            user_id,
        )
    assert len(throttled) == 5
    assert await worker.run_once() == 1
    row = await attempts_of(admin, user_id, "email")
    assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 1, None)
    assert len(emails_to(moto_endpoint, email)) == 1


async def test_sns_throttling_is_retried_without_burning_attempts(
    send_event, make_worker, admin, moto_endpoint, aws, aws_edge
) -> None:
    edge, edge_url = aws_edge
    throttled = edge.answer_with_error("PublishBatch", "Throttled", times=4)
    worker = make_worker(aws_endpoint_url=edge_url)
    user_id, email = new_user()
    await send_event("user.registered", {"user_id": user_id, "email": email})
    for _ in range(4):
        await worker.run_once()
        row = await attempts_of(admin, user_id, "push")
        assert (row["status"], row["attempts"], row["later"]) == ("pending", 0, True)
        assert "Throttled" in row["last_error"]
        await admin.execute(
            "UPDATE notifications.notifications SET next_attempt_at = now() WHERE user_id = $1",
            user_id,
        )
    assert len(throttled) == 4
    assert await worker.run_once() == 1
    row = await attempts_of(admin, user_id, "push")
    assert (row["status"], row["attempts"]) == ("sent", 1)
    assert len(topic_publishes(moto_endpoint, aws.sns_topic_arn, user_id)) == 1
