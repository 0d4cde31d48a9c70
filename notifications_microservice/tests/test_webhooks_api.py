"""`/notifications/webhooks`: endpoints with a secret shown once, an event filter, ownership,
cursor pagination, soft deletion, and URLs that may not lead inside the network."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from micropay_testing.apps import serve
from micropay_testing.http import bearer
from notifications_microservice.main import create_app
from notifications_microservice.tests.helpers import create_webhook
from notifications_microservice.webhooks.exceptions import InvalidWebhookUrl
from notifications_microservice.webhooks.urls import check_destination

PROBLEM = "application/problem+json"


async def test_create_shows_the_secret_once(client, make_user):
    user = make_user()
    created = await create_webhook(client, user, "https://example.com/hooks", ["payment.succeeded"])
    assert created["secret"].startswith("whsec_")
    assert len(created["secret"]) == len("whsec_") + 32
    assert created["events"] == ["payment.succeeded"]
    assert created["status"] == "enabled"
    shown = await client.get(
        f"/notifications/webhooks/{created['id']}", headers=bearer(user.access_token)
    )
    assert shown.status_code == 200
    assert "secret" not in shown.json()
    listed = await client.get("/notifications/webhooks", headers=bearer(user.access_token))
    assert [e["id"] for e in listed.json()["data"]] == [created["id"]]
    assert "secret" not in listed.json()["data"][0]


async def test_events_default_to_all_and_repeats_collapse(client, make_user):
    user = make_user()
    every = await create_webhook(client, user, "https://example.com/all")
    assert set(every["events"]) == {
        "user.registered",
        "payment.succeeded",
        "payment.failed",
        "payment.refunded",
        "payment.refund_failed",
        "payment.dispute_opened",
        "payment.dispute_funds_withdrawn",
        "payment.dispute_funds_reinstated",
        "payment.dispute_closed",
        "transfer.completed",
        "money_request.created",
        "money_request.received",
        "money_request.paid",
        "money_request.declined",
        "money_request.canceled",
        "money_request.expired",
        "transfer.invited",
        "transfer.invitation_canceled",
        "transfer.invitation_expired",
    }
    twice = await create_webhook(
        client, user, "https://example.com/t", ["payment.failed", "payment.failed"]
    )
    assert twice["events"] == ["payment.failed"]


@pytest.mark.parametrize(
    ("body", "problem_type"),
    [
        ({"url": "ftp://example.com/x"}, "invalid_webhook_url"),
        ({"url": "https://user:pw@example.com/x"}, "invalid_webhook_url"),
        ({"url": "not a url"}, "invalid_webhook_url"),
        ({"url": "https://example.com/x", "events": ["payment.exploded"]}, "validation_error"),
        ({"url": "https://example.com/x", "events": []}, "validation_error"),
        ({"url": "https://example.com/x", "secret": "mine"}, "validation_error"),
    ],
)
async def test_bad_endpoints_are_422_problems(client, make_user, body, problem_type):
    user = make_user()
    response = await client.post(
        "/notifications/webhooks", json=body, headers=bearer(user.access_token)
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == problem_type


async def test_another_users_endpoint_is_not_found(client, make_user):
    owner, stranger = make_user(), make_user()
    created = await create_webhook(client, owner, "https://example.com/mine")
    for method, path in [
        ("GET", f"/notifications/webhooks/{created['id']}"),
        ("DELETE", f"/notifications/webhooks/{created['id']}"),
        ("GET", f"/notifications/webhooks/{created['id']}/deliveries"),
        ("POST", f"/notifications/webhooks/{created['id']}/deliveries/1/redeliver"),
    ]:
        response = await client.request(method, path, headers=bearer(stranger.access_token))
        assert response.status_code == 404, (method, path)
        assert response.json()["type"] == "not_found"


async def test_list_pages_newest_first_with_a_cursor(client, make_user):
    user = make_user()
    headers = bearer(user.access_token)
    ids = [(await create_webhook(client, user, f"https://example.com/{n}"))["id"] for n in range(3)]
    first = (await client.get("/notifications/webhooks?limit=2", headers=headers)).json()
    assert [e["id"] for e in first["data"]] == ids[:0:-1]
    assert first["has_more"] is True
    rest = await client.get(
        f"/notifications/webhooks?limit=2&starting_after={first['data'][-1]['id']}",
        headers=headers,
    )
    assert [e["id"] for e in rest.json()["data"]] == [ids[0]]
    assert rest.json()["has_more"] is False
    stranger = await client.get(
        f"/notifications/webhooks?starting_after={uuid.uuid4()}", headers=headers
    )
    assert stranger.status_code == 400
    assert stranger.json()["type"] == "invalid_cursor"


async def test_delete_hides_the_endpoint_and_fails_its_waiting_messages(
    client, registered, send_event, admin
):
    user = await registered()
    created = await create_webhook(client, user, "http://127.0.0.1:9/x", ["payment.succeeded"])
    await send_event(
        "payment.succeeded",
        {"payment_id": "pay_d", "user_id": user.sub, "amount": 1, "currency": "USD"},
    )
    deleted = await client.delete(
        f"/notifications/webhooks/{created['id']}", headers=bearer(user.access_token)
    )
    assert deleted.status_code == 204
    again = await client.get(
        f"/notifications/webhooks/{created['id']}", headers=bearer(user.access_token)
    )
    assert again.status_code == 404
    row = await admin.fetchrow(
        "SELECT status, last_error FROM notifications.notifications WHERE channel = 'webhook'"
        " AND user_id = $1",
        user.sub,
    )
    assert (row["status"], row["last_error"]) == ("failed", "webhook endpoint deleted")
    listed = await client.get("/notifications?channel=webhook", headers=bearer(user.access_token))
    assert listed.json()["data"][0]["failure_reason"] == "webhook endpoint deleted"


async def test_endpoint_count_is_limited(notifications_settings, make_user):
    app = create_app(notifications_settings(webhook_max_endpoints_per_user=2), background_jobs=())
    user = make_user()
    async with serve(app) as client:
        for n in range(2):
            await create_webhook(client, user, f"https://example.com/{n}")
        third = await client.post(
            "/notifications/webhooks",
            json={"url": "https://example.com/3"},
            headers=bearer(user.access_token),
        )
    assert third.status_code == 409
    assert third.json()["type"] == "too_many_webhook_endpoints"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:8080/hook", "loopback"),
        ("http://localhost:8080/hook", "loopback"),  # a name, resolved: /etc/hosts says 127.0.0.1
        ("http://10.1.2.3/hook", "private"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://[::1]/hook", "loopback"),
        ("http://[::ffff:192.168.0.1]/hook", "private"),
        ("http://100.64.0.1/hook", "not publicly routable"),
        ("http://[64:ff9b::a01:203]/hook", "NAT64"),  # 10.1.2.3 through a translator
        ("http://[64:ff9b:1::808:808]/hook", "NAT64"),  # the local-use prefix
        ("http://[2002:a01:203::1]/hook", "6to4"),  # 10.1.2.3 through a 6to4 relay
        ("http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/hook", "Teredo"),
    ],
)
async def test_private_destinations_are_refused_unless_allowed(
    notifications_settings, make_user, url, why
):
    app = create_app(notifications_settings(webhooks_allow_private_urls=False), background_jobs=())
    user = make_user()
    async with serve(app) as client:
        response = await client.post(
            "/notifications/webhooks", json={"url": url}, headers=bearer(user.access_token)
        )
    assert response.status_code == 422
    assert response.json()["type"] == "invalid_webhook_url"
    assert why in response.json()["detail"]


@pytest.mark.parametrize(
    ("url", "port"),
    [("http://hooks.example.com/x", 80), ("https://hooks.example.com:8443/x", 8443)],
)
async def test_a_port_the_service_cannot_reach_is_refused_at_registration(
    notifications_settings, make_user, url, port
):
    """Where egress is limited to 443, an endpoint on another port could never be delivered."""
    settings = notifications_settings(webhook_allowed_ports=frozenset({443}))
    app = create_app(settings, background_jobs=())
    user = make_user()
    async with serve(app) as client:
        response = await client.post(
            "/notifications/webhooks", json={"url": url}, headers=bearer(user.access_token)
        )
        assert response.status_code == 422
        assert response.json()["type"] == "invalid_webhook_url"
        assert f"only to port 443; this URL uses port {port}" in response.json()["detail"]
        listed = await client.get("/notifications/webhooks", headers=bearer(user.access_token))
    assert listed.json()["data"] == []


def test_allowed_ports_read_from_the_environment(notifications_settings):
    assert notifications_settings(webhook_allowed_ports="443, 8443").webhook_allowed_ports == {
        443,
        8443,
    }
    assert notifications_settings(webhook_allowed_ports="").webhook_allowed_ports == frozenset()
    with pytest.raises(ValueError, match="1 to 65535"):
        notifications_settings(webhook_allowed_ports="0")


async def test_every_resolved_address_is_checked():
    """A name with one public and one private address (DNS is the outside edge: a stub)."""

    async def two_answers(host: str, port: int) -> list[str]:
        return ["93.184.215.14", "10.0.0.7"]

    async def public_only(host: str, port: int) -> list[str]:
        return ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]

    with pytest.raises(InvalidWebhookUrl, match=r"resolves to 10\.0\.0\.7, a private address"):
        await check_destination(
            "https://hooks.example.com/x", allow_private=False, resolver=two_answers
        )
    destination = await check_destination(
        "https://hooks.example.com:8443/x?a=1", allow_private=False, resolver=public_only
    )
    assert destination.address == "93.184.215.14"
    assert str(destination.request_url()) == "https://93.184.215.14:8443/x?a=1"


async def test_an_unresolvable_host_is_refused(notifications_settings, make_user):
    app = create_app(notifications_settings(webhooks_allow_private_urls=False), background_jobs=())
    user = make_user()
    async with serve(app) as client:
        response = await client.post(
            "/notifications/webhooks",
            json={"url": "https://no-such-host.invalid/hook"},
            headers=bearer(user.access_token),
        )
    assert response.status_code == 422
    assert "does not resolve" in response.json()["detail"]


async def test_webhooks_need_a_user_token(client):
    response = await client.get("/notifications/webhooks")
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM


async def test_the_endpoint_cap_holds_when_creations_arrive_at_once(
    notifications_settings, make_user, admin
):
    app = create_app(notifications_settings(webhook_max_endpoints_per_user=2), background_jobs=())
    user = make_user()

    async def create(n: int):
        return await client.post(
            "/notifications/webhooks",
            json={"url": f"https://example.com/{n}"},
            headers=bearer(user.access_token),
        )

    async with serve(app) as client:
        responses = await asyncio.gather(*(create(n) for n in range(8)))
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] * 2 + [409] * 6
    count = await admin.fetchval(
        "SELECT count(*) FROM notifications.webhook_endpoints WHERE user_id = $1", user.sub
    )
    assert count == 2
