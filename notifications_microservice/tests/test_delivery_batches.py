"""The delivery worker works in batches: a claim takes the oldest due rows first in one
statement and the outcomes of a batch are recorded in one statement; workers racing over a
backlog send every row exactly once; the backlog's size and age are on /metrics."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from sqlalchemy import event

from micropay_testing.polling import eventually
from notifications_microservice.delivery.backlog import observe_backlog
from notifications_microservice.state import NotificationsState
from notifications_microservice.tests.helpers import emails_to, new_user, topic_publishes


async def backlog_of(send_event, users: int, payments: int) -> list[tuple[str, str]]:
    """Registered users with payments: an email and a push per event."""
    made = []
    for _ in range(users):
        user_id, email = new_user()
        await send_event("user.registered", {"user_id": user_id, "email": email})
        for n in range(payments):
            await send_event(
                "payment.succeeded",
                {
                    "payment_id": f"pay_{user_id[:8]}_{n}",
                    "user_id": user_id,
                    "amount": 100 + n,
                    "currency": "USD",
                },
            )
        made.append((user_id, email))
    return made


async def test_a_claim_takes_the_oldest_due_rows_first(send_event, make_worker, admin) -> None:
    await backlog_of(send_event, users=2, payments=2)
    # Give every row its own due time, in an order unlike the order they were written in.
    await admin.execute(
        "UPDATE notifications.notifications AS n SET next_attempt_at = now() - o.age"
        " FROM (SELECT id, make_interval(mins => (row_number() OVER (ORDER BY id))::int) AS age"
        "       FROM notifications.notifications) AS o WHERE n.id = o.id"
    )
    expected = [
        row["id"]
        for row in await admin.fetch(
            "SELECT id FROM notifications.notifications ORDER BY next_attempt_at"
        )
    ]
    assert len(expected) == 12
    worker = make_worker(delivery_batch_size=5)
    claimed = []
    for _ in range(3):
        _, rows = await worker.claim()
        claimed.append([row.id for row in rows])
    assert claimed == [expected[:5], expected[5:10], expected[10:]]


async def test_a_batch_is_claimed_in_one_statement_and_recorded_in_one(
    app, send_event, make_worker, admin, moto_endpoint
) -> None:
    made = await backlog_of(send_event, users=3, payments=3)
    engine = NotificationsState.of(app).engine.sync_engine
    updates: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE NOTIFICATIONS.NOTIFICATIONS"):
            updates.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        assert await make_worker(delivery_batch_size=100).run_once() == 24
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert len(updates) == 2  # the claim, then every outcome of the batch
    assert (
        await admin.fetchval(
            "SELECT count(*) FROM notifications.notifications WHERE status = 'sent'"
        )
        == 24
    )
    for _, email in made:
        assert len(emails_to(moto_endpoint, email)) == 4


async def test_racing_workers_send_every_row_of_a_backlog_once(
    send_event, make_worker, admin, moto_endpoint, aws
) -> None:
    made = await backlog_of(send_event, users=4, payments=5)
    workers = [make_worker(delivery_batch_size=7, delivery_concurrency=3) for _ in range(3)]
    claimed = [0, 0, 0]

    async def drain(index: int) -> None:
        while count := await workers[index].run_once():
            claimed[index] += count

    await asyncio.gather(*(drain(i) for i in range(3)))
    assert sum(claimed) == 48  # 4 users x 6 events x (email, push)
    assert sum(1 for n in claimed if n) >= 2, claimed
    for user_id, email in made:
        assert len(emails_to(moto_endpoint, email)) == 6
        published = topic_publishes(moto_endpoint, aws.sns_topic_arn, user_id)
        ids = [message["message"]["notification_id"] for message in published]
        assert sorted(ids) == sorted(set(ids))
        assert len(ids) == 6
    assert (
        await admin.fetchval(
            "SELECT count(*) FROM notifications.notifications"
            " WHERE status = 'sent' AND attempts = 1"
        )
        == 48
    )


def sample(text: str, name: str, channel: str) -> float:
    match = re.search(rf'^{name}{{channel="{channel}"}} (\S+)$', text, re.MULTILINE)
    assert match, f"{name} for {channel} not on /metrics"
    return float(match.group(1))


async def test_the_backlog_and_its_oldest_row_are_on_metrics(
    app, client, send_event, worker, admin
) -> None:
    await backlog_of(send_event, users=1, payments=2)
    # An email written ten minutes ago and still waiting; a push retry due in an hour.
    await admin.execute(
        "UPDATE notifications.notifications SET created_at = now() - interval '10 minutes',"
        " next_attempt_at = now() - interval '10 minutes'"
        " WHERE id = (SELECT id FROM notifications.notifications WHERE channel = 'email' LIMIT 1)"
    )
    await admin.execute(
        "UPDATE notifications.notifications SET created_at = now() - interval '1 hour',"
        " next_attempt_at = now() + interval '1 hour'"
        " WHERE id = (SELECT id FROM notifications.notifications WHERE channel = 'push' LIMIT 1)"
    )
    state = NotificationsState.of(app)
    await observe_backlog(state.sessionmaker, state.backlog)
    text = (await client.get("/metrics")).text
    assert sample(text, "micropay_notifications_pending", "email") == 3
    assert sample(text, "micropay_notifications_pending", "push") == 3
    assert sample(text, "micropay_notifications_pending", "webhook") == 0
    assert 600 <= sample(text, "micropay_notifications_oldest_pending_age_seconds", "email") < 660
    assert 600 <= sample(text, "micropay_notifications_oldest_due_age_seconds", "email") < 660
    # The retry is old, but not due: it counts as pending, not as the worker being behind.
    assert sample(text, "micropay_notifications_oldest_pending_age_seconds", "push") >= 3600
    assert sample(text, "micropay_notifications_oldest_due_age_seconds", "push") < 60

    assert await worker.run_once() == 5
    await observe_backlog(state.sessionmaker, state.backlog)
    text = (await client.get("/metrics")).text
    assert sample(text, "micropay_notifications_pending", "email") == 0
    assert sample(text, "micropay_notifications_oldest_pending_age_seconds", "email") == 0
    assert sample(text, "micropay_notifications_pending", "push") == 1
    assert sample(text, "micropay_notifications_oldest_due_age_seconds", "push") == 0


async def test_after_a_pass_that_was_not_full_the_worker_rests_before_the_next(
    send_event, make_worker, admin
) -> None:
    worker = make_worker(delivery_gather_seconds=5.0)
    (first,) = await backlog_of(send_event, users=1, payments=0)

    async def statuses(user_id: str) -> set[str]:
        rows = await admin.fetch(
            "SELECT status FROM notifications.notifications WHERE user_id = $1", user_id
        )
        return {row["status"] for row in rows}

    resting = asyncio.create_task(worker.delivery_pass())
    try:

        async def first_sent() -> bool:
            return await statuses(first[0]) == {"sent"}

        await eventually(first_sent, within=10)
        (second,) = await backlog_of(send_event, users=1, payments=0)
        await asyncio.sleep(0.5)
        # The pass sent its batch and now rests: the second user's rows wait for the next pass.
        assert not resting.done()
        assert await statuses(second[0]) == {"pending"}
    finally:
        resting.cancel()
    assert await worker.run_once() == 2
    assert await statuses(second[0]) == {"sent"}
