"""`GET /notifications`: the caller's own notifications, newest first, cursor-paginated,
filtered by channel and status."""

from __future__ import annotations

import uuid

import pytest

from micropay_testing.http import bearer

PROBLEM = "application/problem+json"


async def test_lists_only_the_callers_own_newest_first(client, registered, send_event, worker):
    user, other = await registered(), await registered()
    await send_event(
        "payment.succeeded",
        {"payment_id": "pay_l", "user_id": user.sub, "amount": 4200, "currency": "USD"},
    )
    await worker.run_once()
    response = await client.get("/notifications", headers=bearer(user.access_token))
    assert response.status_code == 200
    page = response.json()
    assert page["has_more"] is False
    events = [(n["event"], n["channel"]) for n in page["data"]]
    assert sorted(events[:2]) == [("payment.succeeded", "email"), ("payment.succeeded", "push")]
    assert sorted(events[2:]) == [("user.registered", "email"), ("user.registered", "push")]
    first = page["data"][0]
    assert set(first) == {
        "id",
        "channel",
        "event",
        "subject",
        "status",
        "attempts",
        "failure_reason",
        "created_at",
        "sent_at",
    }
    assert first["status"] == "sent"
    assert first["sent_at"] is not None
    assert {n["subject"] for n in page["data"][:2]} == {"Top-up of 42.00 USD received"}
    theirs = await client.get("/notifications", headers=bearer(other.access_token))
    assert {n["event"] for n in theirs.json()["data"]} == {"user.registered"}


async def test_pages_with_a_cursor_and_filters(client, registered, send_event):
    user = await registered()
    headers = bearer(user.access_token)
    for n in range(3):
        await send_event(
            "payment.failed",
            {"payment_id": f"pay_{n}", "user_id": user.sub, "amount": 10, "currency": "USD"},
        )
    emails = (await client.get("/notifications?channel=email&limit=2", headers=headers)).json()
    assert [n["channel"] for n in emails["data"]] == ["email", "email"]
    assert emails["has_more"] is True
    seen = [n["id"] for n in emails["data"]]
    cursor = seen[-1]
    while True:
        page = (
            await client.get(
                f"/notifications?channel=email&limit=2&starting_after={cursor}", headers=headers
            )
        ).json()
        seen += [n["id"] for n in page["data"]]
        if not page["has_more"]:
            break
        cursor = page["data"][-1]["id"]
    assert len(seen) == len(set(seen)) == 4
    pending = (await client.get("/notifications?status=pending", headers=headers)).json()
    assert len(pending["data"]) == 8
    sent = (await client.get("/notifications?status=sent", headers=headers)).json()
    assert sent["data"] == []


@pytest.mark.parametrize(
    ("query", "status", "problem_type"),
    [
        ("limit=0", 422, "validation_error"),
        ("limit=101", 422, "validation_error"),
        ("channel=fax", 422, "validation_error"),
        ("status=lost", 422, "validation_error"),
        (f"starting_after={uuid.uuid4()}", 400, "invalid_cursor"),
    ],
)
async def test_bad_queries_are_problems(client, make_user, query, status, problem_type):
    user = make_user()
    response = await client.get(f"/notifications?{query}", headers=bearer(user.access_token))
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == problem_type


async def test_needs_a_user_token(client):
    response = await client.get("/notifications")
    assert response.status_code == 401
