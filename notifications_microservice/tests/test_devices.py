"""`/notifications/devices`: an SNS platform endpoint per push token (moto), per user."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from micropay_testing.apps import serve
from micropay_testing.http import bearer
from notifications_microservice.main import create_app
from notifications_microservice.state import NotificationsState
from notifications_microservice.tests.helpers import moto_data


def endpoints_with_token(moto_endpoint: str, token: str) -> list[dict[str, Any]]:
    return [e for e in moto_data(moto_endpoint)["sns"]["PlatformEndpoint"] if e["token"] == token]


async def register(client, user, platform: str, token: str):
    return await client.post(
        "/notifications/devices",
        json={"platform": platform, "token": token},
        headers=bearer(user.access_token),
    )


async def test_a_device_gets_a_platform_endpoint_of_its_platform(client, make_user, moto_endpoint):
    user = make_user()
    token = f"fcm-{uuid.uuid4()}"
    response = await register(client, user, "fcm", token)
    assert response.status_code == 201
    device = response.json()
    assert (device["platform"], device["enabled"], device["disabled_reason"]) == ("fcm", True, None)
    [endpoint] = endpoints_with_token(moto_endpoint, token)
    assert ":endpoint/GCM/micropay-fcm/" in endpoint["arn"]
    listed = await client.get("/notifications/devices", headers=bearer(user.access_token))
    assert [d["id"] for d in listed.json()["data"]] == [device["id"]]


async def test_registering_a_token_again_reuses_its_endpoint_and_enables_it(
    client, make_user, moto_endpoint, app, admin
):
    user = make_user()
    token = f"apns-{uuid.uuid4()}"
    first = (await register(client, user, "apns", token)).json()
    arn = endpoints_with_token(moto_endpoint, token)[0]["arn"]
    NotificationsState.of(app).aws.sns.set_endpoint_attributes(
        EndpointArn=arn, Attributes={"Enabled": "false"}
    )
    await admin.execute(
        "UPDATE notifications.devices SET enabled = false, disabled_reason = 'x' WHERE id = $1",
        uuid.UUID(first["id"]),
    )
    again = await register(client, user, "apns", token)
    assert again.status_code == 201
    assert again.json()["id"] == first["id"]
    assert again.json()["enabled"] is True
    [endpoint] = endpoints_with_token(moto_endpoint, token)
    assert endpoint["arn"] == arn
    assert endpoint["enabled"] is True


async def test_a_token_registered_by_another_user_moves_to_them(client, make_user):
    old_owner, new_owner = make_user(), make_user()
    token = f"fcm-{uuid.uuid4()}"
    await register(client, old_owner, "fcm", token)
    moved = await register(client, new_owner, "fcm", token)
    assert moved.status_code == 201
    old = await client.get("/notifications/devices", headers=bearer(old_owner.access_token))
    new = await client.get("/notifications/devices", headers=bearer(new_owner.access_token))
    assert old.json()["data"] == []
    assert [d["id"] for d in new.json()["data"]] == [moved.json()["id"]]


async def test_delete_removes_the_device_and_its_endpoint(client, make_user, moto_endpoint, app):
    user, stranger = make_user(), make_user()
    token = f"fcm-{uuid.uuid4()}"
    device = (await register(client, user, "fcm", token)).json()
    [endpoint] = endpoints_with_token(moto_endpoint, token)
    sns = NotificationsState.of(app).aws.sns
    path = f"/notifications/devices/{device['id']}"
    refused = await client.delete(path, headers=bearer(stranger.access_token))
    assert refused.status_code == 404
    assert sns.get_endpoint_attributes(EndpointArn=endpoint["arn"])["Attributes"]["Token"] == token
    removed = await client.delete(path, headers=bearer(user.access_token))
    assert removed.status_code == 204
    with pytest.raises(sns.exceptions.NotFoundException):
        sns.get_endpoint_attributes(EndpointArn=endpoint["arn"])
    assert (await client.delete(path, headers=bearer(user.access_token))).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"platform": "blackberry", "token": "t"},
        {"platform": "fcm", "token": ""},
        {"platform": "fcm", "token": "has spaces"},
        {"platform": "fcm", "token": "tok\u0007en"},
        {"platform": "fcm", "token": "t\u00e9l\u00e9phone"},
        {"platform": "fcm"},
    ],
)
async def test_bad_device_bodies_are_422(client, make_user, body):
    user = make_user()
    response = await client.post(
        "/notifications/devices", json=body, headers=bearer(user.access_token)
    )
    assert response.status_code == 422
    assert response.json()["type"] == "validation_error"


async def test_sns_unreachable_is_a_503_and_records_nothing(
    notifications_settings, make_user, admin
):
    from micropay_testing.apps import serve
    from notifications_microservice.main import create_app

    app = create_app(
        notifications_settings(aws_endpoint_url="http://127.0.0.1:9", aws_timeout_seconds=1.0),
        background_jobs=(),
    )
    user = make_user()
    async with serve(app) as client:
        response = await register(client, user, "fcm", "fcm-unreachable")
    assert response.status_code == 503
    assert response.json()["type"] == "push_unavailable"
    assert await admin.fetchval("SELECT count(*) FROM notifications.devices") == 0


async def test_devices_per_user_are_capped_and_a_token_again_is_not_one_more(
    notifications_settings, make_user
):
    app = create_app(notifications_settings(devices_per_user_max=2), background_jobs=())
    user = make_user()
    tokens = [f"fcm-{uuid.uuid4()}" for _ in range(3)]
    async with serve(app) as client:
        for token in tokens[:2]:
            assert (await register(client, user, "fcm", token)).status_code == 201
        again = await register(client, user, "fcm", tokens[0])
        one_more = await register(client, user, "fcm", tokens[2])
        listed = await client.get("/notifications/devices", headers=bearer(user.access_token))
    assert again.status_code == 201
    assert one_more.status_code == 409
    assert one_more.headers["content-type"] == "application/problem+json"
    assert one_more.json()["type"] == "too_many_devices"
    assert len(listed.json()["data"]) == 2


async def test_the_device_cap_holds_when_registrations_arrive_at_once(
    notifications_settings, make_user, admin
):
    app = create_app(notifications_settings(devices_per_user_max=2), background_jobs=())
    user = make_user()
    tokens = [f"fcm-{uuid.uuid4()}" for _ in range(8)]
    async with serve(app) as client:
        responses = await asyncio.gather(*(register(client, user, "fcm", t) for t in tokens))
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] * 2 + [409] * 6
    count = await admin.fetchval(
        "SELECT count(*) FROM notifications.devices WHERE user_id = $1", user.sub
    )
    assert count == 2
