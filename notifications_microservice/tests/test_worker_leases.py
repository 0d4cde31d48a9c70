"""The delivery worker's leases: concurrent workers send each row exactly once, a row being sent
is not claimed by another worker, a crashed worker's rows are picked up when the lease runs
out, and a worker whose lease ran out neither sends nor records."""

from __future__ import annotations

import asyncio

from micropay_testing.polling import eventually
from notifications_microservice.delivery.outcomes import Deferred
from notifications_microservice.tests.helpers import create_webhook, emails_to


async def pay(send_event, user, count: int) -> None:
    for n in range(count):
        response = await send_event(
            "payment.succeeded",
            {"payment_id": f"pay_{n}", "user_id": user.sub, "amount": 100 + n, "currency": "USD"},
        )
        assert response.json() == {"status": "applied"}


async def statuses(admin, user_id: str) -> dict[str, int]:
    rows = await admin.fetch(
        "SELECT status, count(*) AS n FROM notifications.notifications WHERE user_id = $1"
        " GROUP BY status",
        user_id,
    )
    return {row["status"]: row["n"] for row in rows}


async def test_two_workers_racing_send_each_row_exactly_once(
    client, registered, send_event, make_worker, receiver, admin, moto_endpoint
):
    recorder, base = receiver
    recorder.script("/hooks/race", *[(200, {}, "ok", 0.05)] * 30)
    user = await registered()
    await create_webhook(client, user, f"{base}/hooks/race", ["payment.succeeded"], recorder)
    await pay(send_event, user, 30)
    workers = [make_worker(delivery_batch_size=10) for _ in range(2)]
    claimed = [0, 0]

    async def drain(index: int) -> None:
        while True:
            count = await workers[index].run_once()
            claimed[index] += count
            if not count:
                return

    await asyncio.gather(drain(0), drain(1))
    # 1 welcome email + 1 welcome push, then 30 payments x (email, push, webhook). A send that
    # failed for a moment (a loaded machine's moto timing out) is claimed again on its retry,
    # so the claims may exceed 92; what was sent, counted at each receiver below, may not.
    assert sum(claimed) >= 92
    assert all(claimed), f"both workers should have sent some rows: {claimed}"
    requests = recorder.at("/hooks/race")
    assert len(requests) == 30
    assert len({r.headers["webhook-id"] for r in requests}) == 30
    assert all(r.error is None for r in requests)
    assert len(emails_to(moto_endpoint, user.username)) == 31
    assert await statuses(admin, user.sub) == {"sent": 92}


async def test_a_row_being_sent_is_not_claimed_by_another_worker(
    client, registered, send_event, worker, make_worker, receiver, admin
):
    recorder, base = receiver
    recorder.script("/hooks/slowish", (200, {}, "ok", 0.8))
    user = await registered()
    await create_webhook(client, user, f"{base}/hooks/slowish", ["payment.succeeded"], recorder)
    await pay(send_event, user, 1)
    # Only the webhook message is left to send.
    await admin.execute(
        "UPDATE notifications.notifications SET status = 'sent' WHERE user_id = $1"
        " AND channel <> 'webhook'",
        user.sub,
    )
    first = asyncio.create_task(worker.run_once())
    await eventually(lambda: recorder.in_flight == 1)
    other = make_worker()
    assert await other.run_once() == 0
    assert await first == 1
    assert len(recorder.at("/hooks/slowish")) == 1


async def test_a_crashed_workers_rows_are_sent_after_its_lease_runs_out(
    client, registered, send_event, make_worker, receiver, admin
):
    recorder, base = receiver
    user = await registered()
    await create_webhook(client, user, f"{base}/hooks/crash", ["payment.succeeded"], recorder)
    await pay(send_event, user, 1)
    short = {
        "delivery_lease_seconds": 2.0,
        "webhook_timeout_seconds": 0.5,
        "aws_timeout_seconds": 0.5,
    }
    crashed = make_worker(**short)
    lease, rows = await crashed.claim()  # ... and the process dies before sending anything
    assert len(rows) == 5  # welcome email and push; the payment's email, push and webhook
    survivor = make_worker(**short)
    assert await survivor.run_once() == 0  # the lease is still live

    await asyncio.sleep(2.1)
    assert await survivor.run_once() == 5
    assert len(recorder.at("/hooks/crash")) == 1
    assert await statuses(admin, user.sub) == {"sent": 5}
    attempts = await admin.fetchval(
        "SELECT attempts FROM notifications.notifications WHERE user_id = $1"
        " AND channel = 'webhook'",
        user.sub,
    )
    assert attempts == 2  # the crashed claim counts as an attempt

    # The crashed worker comes back: its lease has run out, so it sends nothing and its
    # outcome is not recorded over the survivor's.
    webhook_row = next(row for row in rows if row.channel == "webhook")
    result = await crashed.deliver(webhook_row, lease)
    assert isinstance(result.outcome, Deferred)
    assert len(recorder.at("/hooks/crash")) == 1
    assert await statuses(admin, user.sub) == {"sent": 5}
