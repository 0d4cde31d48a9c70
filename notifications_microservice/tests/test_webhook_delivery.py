"""Webhook deliveries to a real HTTP receiver that verifies signatures with `standardwebhooks`:
success, a receiver that is down then up, 410 Gone, timeouts, Retry-After, the delivery log,
manual redelivery, and a name that resolves inside the network at delivery time."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from micropay_testing.apps import serve_http
from micropay_testing.http import bearer
from micropay_testing.processes import free_port
from notifications_microservice.delivery.webhook import WebhookSender, retry_after_seconds
from notifications_microservice.delivery.worker import DeliveryWorker
from notifications_microservice.state import NotificationsState
from notifications_microservice.tests.helpers import Receiver, create_webhook


async def pay(send_event, user, payment_id: str = "pay_1", amount: int = 1250) -> None:
    response = await send_event(
        "payment.succeeded",
        {"payment_id": payment_id, "user_id": user.sub, "amount": amount, "currency": "USD"},
    )
    assert response.json() == {"status": "applied"}


async def webhook_row(admin, user_id: str):
    return await admin.fetchrow(
        "SELECT id, status, attempts, last_error, next_attempt_at, now() AS now"
        " FROM notifications.notifications WHERE user_id = $1 AND channel = 'webhook'"
        " ORDER BY created_at DESC LIMIT 1",
        user_id,
    )


async def deliveries(client, user, endpoint_id: str) -> list[dict[str, Any]]:
    response = await client.get(
        f"/notifications/webhooks/{endpoint_id}/deliveries", headers=bearer(user.access_token)
    )
    assert response.status_code == 200
    return list(response.json()["data"])


async def make_due(admin, user_id: str) -> None:
    await admin.execute(
        "UPDATE notifications.notifications SET next_attempt_at = now()"
        " WHERE user_id = $1 AND status = 'pending'",
        user_id,
    )


async def test_a_delivery_is_signed_per_standard_webhooks_and_logged(
    client, registered, send_event, worker, receiver, admin
):
    recorder, base = receiver
    user = await registered()
    endpoint = await create_webhook(
        client, user, f"{base}/hooks/ok", ["payment.succeeded"], recorder
    )
    await pay(send_event, user)
    await worker.run_once()

    [request] = recorder.at("/hooks/ok")
    assert request.error is None
    assert request.verified["type"] == "payment.succeeded"
    assert request.verified["data"] == {"payment_id": "pay_1", "amount": 1250, "currency": "USD"}
    row = await webhook_row(admin, user.sub)
    assert request.headers["webhook-id"] == str(row["id"])
    assert request.headers["webhook-signature"].startswith("v1,")
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == "MicroPay-Webhooks/1.0"
    assert (row["status"], row["attempts"]) == ("sent", 1)

    [logged] = await deliveries(client, user, endpoint["id"])
    assert logged["notification_id"] == str(row["id"])
    assert logged["event"] == "payment.succeeded"
    assert (logged["attempt"], logged["succeeded"], logged["status_code"]) == (1, True, 200)
    assert logged["response_body"] == "ok"
    assert logged["duration_ms"] >= 0
    assert logged["error"] is None
    listed = await client.get("/notifications?channel=webhook", headers=bearer(user.access_token))
    assert listed.json()["data"][0]["status"] == "sent"


async def test_a_receiver_down_then_up_gets_the_message_later_once(
    client, registered, send_event, worker, admin
):
    recorder = Receiver()
    port = free_port()
    user = await registered()
    url = f"http://127.0.0.1:{port}/hooks/later"
    endpoint = await create_webhook(client, user, url, ["payment.succeeded"], recorder)
    await pay(send_event, user)
    await worker.run_once()
    row = await webhook_row(admin, user.sub)
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert "ConnectError" in row["last_error"]

    async with serve_http(recorder.app(), port=port):
        await make_due(admin, user.sub)
        await worker.run_once()
        await make_due(admin, user.sub)
        assert await worker.run_once() == 0
    assert len(recorder.at("/hooks/later")) == 1
    assert recorder.at("/hooks/later")[0].error is None
    row = await webhook_row(admin, user.sub)
    assert (row["status"], row["attempts"]) == ("sent", 2)
    newest, oldest = await deliveries(client, user, endpoint["id"])
    assert (newest["attempt"], newest["succeeded"]) == (2, True)
    assert (oldest["attempt"], oldest["succeeded"], oldest["status_code"]) == (1, False, None)
    assert "ConnectError" in oldest["error"]


async def test_410_gone_disables_the_endpoint_and_fails_what_waits_for_it(
    client, registered, send_event, worker, receiver, admin
):
    recorder, base = receiver
    recorder.script("/hooks/gone", (410, {}, "gone", 0.0))
    user = await registered()
    endpoint = await create_webhook(
        client, user, f"{base}/hooks/gone", ["payment.succeeded"], recorder
    )
    await pay(send_event, user, "pay_first")
    await pay(send_event, user, "pay_second")
    # The second message waits for a retry, so only the first is sent now.
    second = await webhook_row(admin, user.sub)
    await admin.execute(
        "UPDATE notifications.notifications SET next_attempt_at = now() + interval '1 hour'"
        " WHERE id = $1",
        second["id"],
    )
    await worker.run_once()

    statuses = await admin.fetch(
        "SELECT status, last_error FROM notifications.notifications"
        " WHERE user_id = $1 AND channel = 'webhook'",
        user.sub,
    )
    assert sorted(r["status"] for r in statuses) == ["failed", "failed"]
    assert {r["last_error"] for r in statuses} == {
        "the endpoint answered 410 Gone",
        "webhook endpoint disabled: the endpoint answered 410 Gone",
    }
    shown = await client.get(
        f"/notifications/webhooks/{endpoint['id']}", headers=bearer(user.access_token)
    )
    assert shown.json()["status"] == "disabled"
    assert shown.json()["disabled_reason"] == "the endpoint answered 410 Gone"
    [logged] = await deliveries(client, user, endpoint["id"])
    assert (logged["status_code"], logged["response_body"]) == (410, "gone")

    await pay(send_event, user, "pay_third")  # no webhook message for a disabled endpoint
    assert (
        await admin.fetchval(
            "SELECT count(*) FROM notifications.notifications WHERE user_id = $1"
            " AND channel = 'webhook'",
            user.sub,
        )
        == 2
    )
    redeliver = await client.post(
        f"/notifications/webhooks/{endpoint['id']}/deliveries/{logged['id']}/redeliver",
        headers=bearer(user.access_token),
    )
    assert redeliver.status_code == 409
    assert redeliver.json()["type"] == "webhook_endpoint_disabled"
    assert len(recorder.at("/hooks/gone")) == 1


async def test_a_slow_receiver_times_out_and_is_retried(
    client, registered, send_event, make_worker, receiver, admin
):
    recorder, base = receiver
    recorder.script("/hooks/slow", (200, {}, "late", 1.5))
    user = await registered()
    endpoint = await create_webhook(
        client, user, f"{base}/hooks/slow", ["payment.succeeded"], recorder
    )
    await pay(send_event, user)
    impatient = make_worker(webhook_timeout_seconds=0.5)
    await impatient.run_once()
    row = await webhook_row(admin, user.sub)
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert row["last_error"] == "timed out after 0.5s"
    [logged] = await deliveries(client, user, endpoint["id"])
    assert logged["error"] == "timed out after 0.5s"
    assert logged["status_code"] is None
    assert 450 <= logged["duration_ms"] < 1400


async def test_retry_after_is_honoured(client, registered, send_event, worker, receiver, admin):
    recorder, base = receiver
    recorder.script("/hooks/busy", (503, {"Retry-After": "120"}, "busy", 0.0))
    user = await registered()
    await create_webhook(client, user, f"{base}/hooks/busy", ["payment.succeeded"], recorder)
    await pay(send_event, user)
    await worker.run_once()
    row = await webhook_row(admin, user.sub)
    assert row["status"] == "pending"
    assert row["last_error"] == "HTTP 503"
    wait = (row["next_attempt_at"] - row["now"]).total_seconds()
    assert 115 <= wait <= 121


def test_retry_after_reads_seconds_and_http_dates():
    now = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    assert retry_after_seconds("30", now) == 30.0
    assert retry_after_seconds("Wed, 01 Jan 2025 12:01:00 GMT", now) == 60.0
    assert retry_after_seconds("Wed, 01 Jan 2025 11:00:00 GMT", now) == 0.0
    assert retry_after_seconds("9999999", now) == 86400.0
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None


async def test_errors_are_retried_on_the_schedule_then_fail(
    client, registered, send_event, make_worker, receiver, admin
):
    recorder, base = receiver
    recorder.script("/hooks/broken", *[(500, {}, "x" * 5000, 0.0)] * 3)
    user = await registered()
    endpoint = await create_webhook(
        client, user, f"{base}/hooks/broken", ["payment.succeeded"], recorder
    )
    await pay(send_event, user)
    two_retries = make_worker(webhook_retry_schedule=(0.0, 0.0))
    for _ in range(4):
        await two_retries.run_once()
    row = await webhook_row(admin, user.sub)
    assert (row["status"], row["attempts"]) == ("failed", 3)
    assert row["last_error"] == "gave up after 3 attempts; last error: HTTP 500"
    logged = await deliveries(client, user, endpoint["id"])
    assert [d["attempt"] for d in logged] == [3, 2, 1]
    assert all(len(d["response_body"]) == 1000 for d in logged)
    assert len(recorder.at("/hooks/broken")) == 3
    # /metrics counts each failed attempt under the endpoint.
    failures = two_retries.webhook_failures.labels(endpoint["id"])
    assert failures._value.get() == 3


async def test_manual_redelivery_sends_the_message_again(
    client, registered, send_event, worker, receiver, admin
):
    recorder, base = receiver
    user = await registered()
    endpoint = await create_webhook(
        client, user, f"{base}/hooks/again", ["payment.succeeded"], recorder
    )
    await pay(send_event, user)
    await worker.run_once()
    [first] = await deliveries(client, user, endpoint["id"])
    path = f"/notifications/webhooks/{endpoint['id']}/deliveries/{first['id']}/redeliver"

    # A worker holds the message right now: no second send at the same time.
    await admin.execute(
        "UPDATE notifications.notifications SET locked_until = now() + interval '1 minute'"
        " WHERE id = $1::uuid",
        first["notification_id"],
    )
    busy = await client.post(path, headers=bearer(user.access_token))
    assert busy.status_code == 409
    assert busy.json()["type"] == "delivery_in_progress"
    await admin.execute(
        "UPDATE notifications.notifications SET locked_until = NULL WHERE id = $1::uuid",
        first["notification_id"],
    )

    queued = await client.post(path, headers=bearer(user.access_token))
    assert queued.status_code == 202
    assert queued.json()["notification_id"] == first["notification_id"]
    await worker.run_once()
    requests = recorder.at("/hooks/again")
    assert len(requests) == 2
    assert requests[0].headers["webhook-id"] == requests[1].headers["webhook-id"]
    assert all(r.error is None for r in requests)
    assert [d["attempt"] for d in await deliveries(client, user, endpoint["id"])] == [2, 1]
    missing = await client.post(
        f"/notifications/webhooks/{endpoint['id']}/deliveries/999999999/redeliver",
        headers=bearer(user.access_token),
    )
    assert missing.status_code == 404


async def test_redelivery_is_rate_limited_per_endpoint_in_the_database(
    app, client, registered, send_event, worker, receiver, admin
):
    recorder, base = receiver
    user = await registered()
    limit = NotificationsState.of(app).settings.webhook_redeliveries_per_minute
    busy, calm = [
        await create_webhook(client, user, f"{base}/hooks/{name}", ["payment.succeeded"], recorder)
        for name in ("busy", "calm")
    ]
    await pay(send_event, user)
    await worker.run_once()

    async def redeliver(endpoint: dict[str, Any]) -> httpx.Response:
        [delivery] = (await deliveries(client, user, endpoint["id"]))[-1:]
        response: httpx.Response = await client.post(
            f"/notifications/webhooks/{endpoint['id']}/deliveries/{delivery['id']}/redeliver",
            headers=bearer(user.access_token),
        )
        return response

    for _ in range(limit):
        assert (await redeliver(busy)).status_code == 202
    refused = await redeliver(busy)
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"] == "too_many_redeliveries"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    # The limit is the endpoint's, not the user's.
    assert (await redeliver(calm)).status_code == 202
    # Kept in the database (every replica counts the same), a request a minute old no longer counts.
    await admin.execute(
        "UPDATE notifications.webhook_redeliveries SET requested_at = now() - interval '61 s'"
        " WHERE endpoint_id = $1::uuid AND id = (SELECT min(id)"
        " FROM notifications.webhook_redeliveries WHERE endpoint_id = $1::uuid)",
        busy["id"],
    )
    assert (await redeliver(busy)).status_code == 202
    assert (await redeliver(busy)).status_code == 429
    assert (
        await admin.fetchval(
            "SELECT count(*) FROM notifications.webhook_redeliveries WHERE endpoint_id = $1::uuid",
            busy["id"],
        )
        == limit
    )


async def test_deliveries_page_with_a_cursor(client, registered, send_event, worker, receiver):
    recorder, base = receiver
    user = await registered()
    endpoint = await create_webhook(
        client, user, f"{base}/hooks/many", ["payment.succeeded"], recorder
    )
    for n in range(3):
        await pay(send_event, user, f"pay_{n}")
    await worker.run_once()
    headers = bearer(user.access_token)
    base_path = f"/notifications/webhooks/{endpoint['id']}/deliveries"
    first = (await client.get(f"{base_path}?limit=2", headers=headers)).json()
    assert first["has_more"] is True
    rest = (
        await client.get(
            f"{base_path}?limit=2&starting_after={first['data'][-1]['id']}", headers=headers
        )
    ).json()
    assert rest["has_more"] is False
    ids = [d["id"] for d in first["data"] + rest["data"]]
    assert ids == sorted(ids, reverse=True)
    assert len(set(ids)) == 3


async def test_a_name_resolving_inside_is_refused_at_delivery_time(
    client, registered, send_event, make_worker, receiver, admin
):
    """The endpoint was accepted (say its name resolved to a public address then); by the time
    of delivery it resolves to loopback, and nothing is sent."""
    recorder, base = receiver
    user = await registered()
    port = base.rsplit(":", 1)[1]
    endpoint = await create_webhook(
        client, user, f"http://localhost:{port}/hooks/inside", ["payment.succeeded"], recorder
    )
    await pay(send_event, user)
    strict = make_worker(webhooks_allow_private_urls=False)
    await strict.run_once()
    assert recorder.at("/hooks/inside") == []
    row = await webhook_row(admin, user.sub)
    assert row["status"] == "pending"
    assert "a loopback address" in row["last_error"]
    [logged] = await deliveries(client, user, endpoint["id"])
    assert logged["succeeded"] is False
    assert logged["status_code"] is None
    assert "resolves to" in logged["error"]


async def test_a_port_outside_the_allowed_ones_is_refused_at_delivery_time(
    client, registered, send_event, make_worker, receiver, admin
):
    """Accepted before WEBHOOK_ALLOWED_PORTS named the ports the egress policy lets through;
    the worker sends nothing to another port and says why."""
    recorder, base = receiver
    user = await registered()
    await create_webhook(client, user, f"{base}/hooks/port", ["payment.succeeded"], recorder)
    await pay(send_event, user)
    restricted = make_worker(webhook_allowed_ports=frozenset({443}))
    await restricted.run_once()
    assert recorder.at("/hooks/port") == []
    row = await webhook_row(admin, user.sub)
    assert row["status"] == "pending"
    assert "only to port 443" in row["last_error"]


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("64:ff9b::a00:7", "NAT64"),
        ("64:ff9b:1::a00:7", "NAT64"),
        ("2002:a00:7::1", "6to4"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
    ],
)
async def test_a_name_resolving_to_a_translated_address_is_refused_at_delivery_time(
    app, client, registered, send_event, receiver, admin, address, why
):
    """An IPv6 address that a translator or relay would carry to an embedded IPv4 address."""
    recorder, base = receiver
    user = await registered()
    await create_webhook(client, user, f"{base}/hooks/translated", ["payment.succeeded"], recorder)
    await pay(send_event, user)

    async def translated(host: str, port: int) -> list[str]:
        return [address]

    state = NotificationsState.of(app)
    strict = DeliveryWorker(
        state.sessionmaker,
        state.settings.model_copy(update={"webhooks_allow_private_urls": False}),
        state.aws,
        state.webhook_secrets,
        resolver=translated,
    )
    try:
        await strict.run_once()
    finally:
        await strict.aclose()
    assert recorder.at("/hooks/translated") == []
    row = await webhook_row(admin, user.sub)
    assert row["status"] == "pending"
    assert why in row["last_error"]


async def test_malformed_ids_are_422(client, make_user):
    user = make_user()
    response = await client.get(
        "/notifications/webhooks/not-a-uuid/deliveries", headers=bearer(user.access_token)
    )
    assert response.status_code == 422
    assert response.json()["type"] == "validation_error"


async def test_a_public_destination_is_reached_at_the_address_that_was_checked(
    client, registered, send_event, make_worker, admin
):
    """Delivery to a public name connects to the checked address, with the name in Host and
    TLS SNI, through a connection pool of that name's own. The public internet is the outside
    edge here: a stub resolver answers for the names and httpx.MockTransport stands for the
    remote server."""
    seen: list[httpx.Request] = []

    def remote(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    async def public(host: str, port: int) -> list[str]:
        assert host in {"hooks.example.com", "other.example.com"}
        assert port == 8443
        return ["93.184.215.14"]

    user = await registered()
    url = "https://hooks.example.com:8443/in?src=micropay"
    endpoint = await create_webhook(client, user, url, ["payment.succeeded"])
    await pay(send_event, user)
    worker = make_worker(webhooks_allow_private_urls=False)
    worker.webhooks = WebhookSender(
        worker.settings,
        worker.webhooks.secrets,
        transport=httpx.MockTransport(remote),
        resolver=public,
    )
    await worker.run_once()
    [request] = seen
    assert str(request.url) == "https://93.184.215.14:8443/in?src=micropay"
    assert request.headers["host"] == "hooks.example.com:8443"
    assert request.extensions["sni_hostname"] == "hooks.example.com"
    # The connection is kept for the name's next delivery.
    assert request.headers.get("connection") != "close"
    verified = Webhook(endpoint["secret"]).verify(request.content, dict(request.headers))
    assert verified["data"]["payment_id"] == "pay_1"
    assert (await webhook_row(admin, user.sub))["status"] == "sent"

    # Another name on the same address gets a pool of its own; the first name keeps its one.
    await create_webhook(client, user, "https://other.example.com:8443/in", ["payment.succeeded"])
    await pay(send_event, user, payment_id="pay_2")
    await worker.run_once()
    hosts = ["hooks.example.com:8443", "other.example.com:8443"]
    assert sorted(r.headers["host"] for r in seen[1:]) == hosts
    assert sorted(worker.webhooks.pinned) == [f"https://{host}" for host in hosts]
