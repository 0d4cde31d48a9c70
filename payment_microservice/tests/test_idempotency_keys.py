"""One Idempotency-Key contract on both mechanisms, seen through the same problems.

Transfers replay stored responses (`idem.run`); payments and refunds answer from their own rows
(keyed resources). Both read the header, fingerprint the request and refuse a key with the
shared pieces of `micropay_common.idempotency`, so a client sees one set of answers.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from micropay_common.errors import PROBLEM_JSON
from micropay_testing.cognito import CognitoUser
from micropay_testing.events import event_envelope
from micropay_testing.http import bearer
from micropay_testing.polling import eventually
from payment_microservice.tests.helpers import PaymentStack

# What differs between two problems of one kind: the URL and the request they answer.
PER_REQUEST = ("instance", "request_id")


async def transfer(
    stack: PaymentStack, sender: CognitoUser, to: CognitoUser, amount: int, key: str | None
) -> httpx.Response:
    """POST /transactions/transfers to the wallet service the payment stack runs."""
    headers = bearer(sender.access_token)
    if key is not None:
        headers["Idempotency-Key"] = key
    async with httpx.AsyncClient(base_url=stack.transactions_url) as client:
        return await client.post(
            "/transactions/transfers",
            json={"to_email": to.username, "amount": amount, "currency": "USD"},
            headers=headers,
        )


async def register(stack: PaymentStack, user: CognitoUser, auth_headers: dict[str, str]) -> None:
    """Tell the wallet service that the user registered (as the auth service does)."""
    event = event_envelope("user.registered", {"user_id": user.sub, "email": user.username})
    async with httpx.AsyncClient(base_url=stack.transactions_url) as client:
        response = await client.post("/internal/events", json=event, headers=auth_headers)
    assert response.status_code == 200, response.text


def problem(response: httpx.Response, status: int, type_: str) -> dict[str, Any]:
    """The problem document, checked for its status, media type and type."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["type"] == type_
    assert body["instance"] == response.request.url.path
    assert "Idempotent-Replayed" not in response.headers
    return body


def without(body: dict[str, Any], *names: str) -> dict[str, Any]:
    return {name: value for name, value in body.items() if name not in names}


async def test_same_key_with_another_body_is_one_conflict_on_both_mechanisms(
    payment_stack, make_user, service_account_headers
):
    payer, recipient = make_user(), make_user()
    await register(payment_stack, recipient, service_account_headers["auth"])
    payment_key, refund_key, transfer_key = (str(uuid.uuid4()) for _ in range(3))

    paid = await payment_stack.pay(payer, amount=1000, key=payment_key)
    assert paid.status_code == 201, paid.text
    payment_id = paid.json()["id"]
    assert await eventually(lambda: _balance_is(payment_stack, payer, 1000))
    refunded = await payment_stack.refund(payer, payment_id, key=refund_key, amount=100)
    assert refunded.status_code == 201, refunded.text
    sent = await transfer(payment_stack, payer, recipient, 100, transfer_key)
    assert sent.status_code == 201, sent.text

    conflicts = {
        "payment": await payment_stack.pay(payer, amount=1100, key=payment_key),
        "refund": await payment_stack.refund(payer, payment_id, key=refund_key, amount=200),
        "transfer": await transfer(payment_stack, payer, recipient, 200, transfer_key),
    }

    bodies = {name: problem(r, 409, "idempotency_conflict") for name, r in conflicts.items()}
    shared = without(bodies["transfer"], "detail", *PER_REQUEST)
    assert shared == {
        "type": "idempotency_conflict",
        "title": "Keys are for retrying the same request",
        "status": 409,
    }
    for name, body in bodies.items():
        assert without(body, "detail", *PER_REQUEST) == shared, name
        assert "Idempotency-Key was first used" in body["detail"], name
    # Nothing was done a second time.
    assert await payment_stack.balance(payer) == 1000 - 100 - 100


async def _balance_is(stack: PaymentStack, user: CognitoUser, expected: int) -> bool:
    return await stack.balance(user) == expected


@pytest.mark.parametrize(
    ("key", "type_"),
    [(None, "idempotency_key_required"), ("tab\there", "invalid_idempotency_key")],
    ids=["missing", "malformed"],
)
async def test_a_missing_or_malformed_key_is_one_answer_on_both_mechanisms(
    payment_stack, make_user, service_account_headers, key, type_
):
    payer, recipient = make_user(), make_user()
    await register(payment_stack, recipient, service_account_headers["auth"])
    headers = bearer(payer.access_token)
    if key is not None:
        headers["Idempotency-Key"] = key
    refused = {
        "payment": await payment_stack.client.post(
            "/payments",
            json={"amount": 1000, "currency": "USD", "payment_method": "pm_card_visa"},
            headers=headers,
        ),
        "refund": await payment_stack.client.post(
            f"/payments/{uuid.uuid4()}/refunds", json={}, headers=headers
        ),
        "transfer": await transfer(payment_stack, payer, recipient, 100, key),
    }

    bodies = {name: problem(r, 400, type_) for name, r in refused.items()}
    assert len({repr(without(body, *PER_REQUEST)) for body in bodies.values()}) == 1, bodies
