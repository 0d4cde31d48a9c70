"""Notification preferences through the gateway: a channel turned off is not sent, the others
are, and a security notice cannot be turned off."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from micropay_testing.polling import eventually
from tests.e2e.client import PROBLEM_JSON, Api, User

pytestmark = pytest.mark.timeout(120)

PREFERENCES = "/notifications/preferences"


async def _topic_pushes(api: Api, user_id: str, event_type: str) -> list[dict[str, Any]]:
    """Messages the SNS topic (moto) got for the user about `event_type`."""
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        data = (await client.get(f"{api.stack.moto_url}/moto-api/data.json")).json()
    found = []
    for topic in data["sns"]["Topic"]:
        for _id, message, _subject, attributes, _group in topic["sent_notifications"]:
            attributes = attributes or {}
            if (
                attributes.get("user_id", {}).get("Value") == user_id
                and attributes.get("event", {}).get("Value") == event_type
            ):
                found.append({"message": message, "attributes": attributes})
    return found


async def _transfer_email_statuses(api: Api, user: User) -> list[str]:
    every = await api.notifications(user, channel="email")
    return [n["status"] for n in every if n["event"] == "transfer.completed"]


async def test_email_turned_off_for_transfers_sends_no_email_but_push_still(api: Api) -> None:
    ana = await api.register("prefs-ana")
    bob = await api.register("prefs-bob")

    defaults = await api.client.get(PREFERENCES, headers=bob.auth)
    assert defaults.status_code == 200, defaults.text
    assert defaults.json()["transfer.completed"] == {
        "email": True,
        "push": True,
        "webhook": True,
        "security_notice": False,
    }
    refused = await api.client.put(
        PREFERENCES, json={"payment.dispute_opened": {"email": False}}, headers=bob.auth
    )
    assert refused.status_code == 422
    assert refused.headers["content-type"] == PROBLEM_JSON
    assert refused.json()["type"] == "security_notice_required"

    changed = await api.client.put(
        PREFERENCES, json={"transfer.completed": {"email": False}}, headers=bob.auth
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["transfer.completed"]["email"] is False
    assert changed.json()["transfer.completed"]["push"] is True

    paid = await api.top_up(ana, 1000)
    assert paid.status_code == 201, paid.text
    await api.balance_becomes(ana, 1000)
    sent = await api.transfer(ana, bob.email, 400)
    assert sent.status_code == 201, sent.text

    async def delivered() -> bool:
        every = await api.notifications(bob, channel="push", status="sent")
        pushed = [n for n in every if n["event"] == "transfer.completed"]
        ana_mail = [m for m in await api.emails_to(ana.email) if bob.email in m["subject"]]
        return len(pushed) == 1 and len(ana_mail) == 1

    await eventually(delivered, within=30)
    # Bob's transfer email was recorded as skipped and never reached SES; his push did go out.
    assert await _transfer_email_statuses(api, bob) == ["skipped"]
    assert [m for m in await api.emails_to(bob.email) if ana.email in m["subject"]] == []
    assert len(await _topic_pushes(api, bob.user_id, "transfer.completed")) == 1
    # Ana kept the defaults: her "sent" email went out.
    assert await _transfer_email_statuses(api, ana) == ["sent"]
