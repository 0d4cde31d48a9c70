"""The PayPal stand-in, held to PayPal's contract: every answer is validated against PayPal's
OpenAPI documents and read with the official SDK's models."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from paypalserversdk.models.o_auth_token import OAuthToken
from paypalserversdk.models.order import Order
from paypalserversdk.models.refund import Refund

from micropay_testing.apps import serve_http
from micropay_testing.paypal import (
    CLIENT,
    buyer_chooses,
    check_component,
    check_request,
    check_response,
    query,
)
from micropay_testing.polling import eventually

RETURN = "https://shop.example/return?cart=1"
CANCEL = "https://shop.example/cancel"


class PayPal:
    """A client of the stand-in that checks every exchange against PayPal's documents."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token

    async def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        request_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """One call; the status and the body (checked against PayPal's schema)."""
        sent = {"Authorization": f"Bearer {self.token}", **(headers or {})}
        if request_id:
            sent["PayPal-Request-Id"] = request_id
        if body is not None and method == "POST":
            check_request(method, path, body)
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as client:
            response = await client.request(method, path, json=body, headers=sent)
        return response.status_code, check_response(method, path, response)

    async def order(
        self, value: str = "10.00", currency: str = "USD", **unit: Any
    ) -> dict[str, Any]:
        """A new order to capture, with return and cancel URLs."""
        status, order = await self.call(
            "POST",
            "/v2/checkout/orders",
            {
                "intent": "CAPTURE",
                "purchase_units": [{"amount": {"currency_code": currency, "value": value}, **unit}],
                "payment_source": {
                    "paypal": {"experience_context": {"return_url": RETURN, "cancel_url": CANCEL}}
                },
            },
            request_id=unit.get("custom_id"),
        )
        assert status == 200, order
        return order

    async def approved(self, value: str = "10.00") -> dict[str, Any]:
        """An order the buyer approved on the approval page."""
        order = await self.order(value)
        await buyer_chooses(approve_link(order), "approve")
        return order


def approve_link(order: dict[str, Any]) -> str:
    """The order's link for the buyer."""
    return str(next(link["href"] for link in order["links"] if link["rel"] == "payer-action"))


@pytest.fixture(scope="module")
async def paypal(paypal_url: str) -> PayPal:
    """A client of the stand-in with a token from client credentials."""
    async with httpx.AsyncClient(base_url=paypal_url) as client:
        response = await client.post(
            "/v1/oauth2/token", data={"grant_type": "client_credentials"}, auth=CLIENT
        )
    assert response.status_code == 200, response.text
    token = OAuthToken.from_dictionary(response.json())
    assert token.token_type == "Bearer"
    assert token.expires_in > 0
    return PayPal(paypal_url, token.access_token)


class Receiver(list[tuple[dict[str, str], bytes]]):
    """What a webhook endpoint was sent (headers, body), and the id PayPal gave it."""

    webhook_id = ""


@pytest.fixture(scope="module")
async def receiver(paypal: PayPal) -> AsyncIterator[Receiver]:
    """A webhook endpoint registered with the stand-in, keeping what it is sent."""
    received = Receiver()
    app = FastAPI()

    @app.post("/hook")
    async def hook(request: Request) -> dict[str, bool]:
        received.append((dict(request.headers), await request.body()))
        return {"ok": True}

    async with serve_http(app) as url:
        status, webhook = await paypal.call(
            "POST",
            "/v1/notifications/webhooks",
            {"url": f"{url}/hook", "event_types": [{"name": "*"}]},
        )
        assert status == 201, webhook
        received.webhook_id = webhook["id"]
        yield received


async def test_token_needs_the_app_credentials(paypal_url: str) -> None:
    async with httpx.AsyncClient(base_url=paypal_url) as client:
        wrong = await client.post(
            "/v1/oauth2/token", data={"grant_type": "client_credentials"}, auth=("x", "y")
        )
        anonymous = await client.get("/v2/checkout/orders/ANY")
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_client"
    assert anonymous.status_code == 401


async def test_order_is_created_once_per_request_id_and_read_with_the_sdk(paypal: PayPal) -> None:
    first = await paypal.order("10.00", custom_id="payment-1")
    again = await paypal.order("10.00", custom_id="payment-1")
    other = await paypal.order("10.00", custom_id="payment-2")
    assert first["id"] == again["id"] != other["id"]
    order = Order.from_dictionary(first)
    assert order.status == "PAYER_ACTION_REQUIRED"
    assert order.purchase_units[0].amount.value == "10.00"
    assert order.purchase_units[0].custom_id == "payment-1"
    status, read = await paypal.call("GET", f"/v2/checkout/orders/{first['id']}")
    assert status == 200
    assert read["id"] == first["id"]


async def test_malformed_orders_are_refused_as_paypal_does(paypal: PayPal) -> None:
    status, body = await paypal.call(
        "POST",
        "/v2/checkout/orders",
        {
            "intent": "CAPTURE",
            "purchase_units": [{"amount": {"currency_code": "JPY", "value": "1.5"}}],
        },
    )
    assert (status, body["details"][0]["issue"]) == (422, "DECIMAL_PRECISION")
    status, body = await paypal.call("GET", "/v2/checkout/orders/NOPE")
    assert (status, body["name"]) == (404, "RESOURCE_NOT_FOUND")


async def test_approval_page_redirects_with_token_and_payer_id(paypal: PayPal) -> None:
    order = await paypal.order()
    status, _ = await paypal.call("POST", f"/v2/checkout/orders/{order['id']}/capture", {})
    assert status == 422  # not approved yet
    location = await buyer_chooses(approve_link(order), "approve")
    params = query(location)
    assert str(location).startswith("https://shop.example/return?")
    assert params["cart"] == "1"
    assert params["token"] == order["id"]
    assert params["PayerID"]
    status, read = await paypal.call("GET", f"/v2/checkout/orders/{order['id']}")
    assert read["status"] == "APPROVED"
    assert read["payer"]["payer_id"] == params["PayerID"]


async def test_cancel_sends_the_buyer_to_the_cancel_url(paypal: PayPal) -> None:
    order = await paypal.order()
    location = await buyer_chooses(approve_link(order), "cancel")
    assert str(location).startswith(CANCEL)
    assert query(location)["token"] == order["id"]


async def test_capture_is_idempotent_by_request_id_and_completes(paypal: PayPal) -> None:
    order = await paypal.approved()
    path = f"/v2/checkout/orders/{order['id']}/capture"
    status, captured = await paypal.call("POST", path, {}, request_id="capture-1")
    status_again, again = await paypal.call("POST", path, {}, request_id="capture-1")
    assert status == status_again == 201
    assert captured == again
    status, refused = await paypal.call("POST", path, {}, request_id="capture-2")
    assert (status, refused["details"][0]["issue"]) == (422, "ORDER_ALREADY_CAPTURED")
    model = Order.from_dictionary(captured)
    capture = model.purchase_units[0].payments.captures[0]
    assert model.status == "COMPLETED"
    assert capture.status == "COMPLETED"
    status, read = await paypal.call("GET", f"/v2/payments/captures/{capture.id}")
    assert status == 200
    assert read["supplementary_data"]["related_ids"]["order_id"] == order["id"]


@pytest.mark.parametrize(("value", "capture_status"), [("6.66", "DECLINED"), ("7.77", "PENDING")])
async def test_special_amounts_decline_or_hold_the_capture(
    paypal: PayPal, value: str, capture_status: str
) -> None:
    order = await paypal.approved(value)
    status, captured = await paypal.call("POST", f"/v2/checkout/orders/{order['id']}/capture", {})
    assert status == 201
    capture = Order.from_dictionary(captured).purchase_units[0].payments.captures[0]
    assert capture.status == capture_status


async def test_refunds_are_bounded_by_the_capture(paypal: PayPal) -> None:
    order = await paypal.approved("10.00")
    _, captured = await paypal.call("POST", f"/v2/checkout/orders/{order['id']}/capture", {})
    capture_id = captured["purchase_units"][0]["payments"]["captures"][0]["id"]
    path = f"/v2/payments/captures/{capture_id}/refund"
    part = {"amount": {"currency_code": "USD", "value": "4.00"}, "custom_id": "refund-1"}
    status, refund = await paypal.call("POST", path, part, request_id="r1")
    assert status == 201
    model = Refund.from_dictionary(refund)
    assert (model.status, model.amount.value, model.custom_id) == ("COMPLETED", "4.00", "refund-1")
    status, again = await paypal.call("POST", path, part, request_id="r1")
    assert again["id"] == refund["id"]
    too_much = {"amount": {"currency_code": "USD", "value": "6.01"}}
    status, refused = await paypal.call("POST", path, too_much, request_id="r2")
    assert (status, refused["details"][0]["issue"]) == (422, "REFUND_AMOUNT_EXCEEDED")
    failing = {"amount": {"currency_code": "USD", "value": "1.13"}}
    status, refused = await paypal.call("POST", path, failing, request_id="r3")
    assert (status, refused["details"][0]["issue"]) == (422, "REFUND_FAILED_INSUFFICIENT_FUNDS")
    status, rest = await paypal.call("POST", path, {}, request_id="r4")
    assert status == 201
    assert rest["amount"]["value"] == "6.00"
    status, read = await paypal.call("GET", f"/v2/payments/refunds/{rest['id']}")
    assert status == 200
    assert read["status"] == "COMPLETED"
    _, capture = await paypal.call("GET", f"/v2/payments/captures/{capture_id}")
    assert capture["status"] == "REFUNDED"


async def test_mock_response_header_fails_a_call(paypal: PayPal) -> None:
    mock = {"PayPal-Mock-Response": json.dumps({"mock_application_codes": "INSTRUMENT_DECLINED"})}
    order = await paypal.approved()
    status, body = await paypal.call(
        "POST", f"/v2/checkout/orders/{order['id']}/capture", {}, headers=mock
    )
    assert (status, body["details"][0]["issue"]) == (422, "INSTRUMENT_DECLINED")


async def test_webhooks_are_signed_and_verified(paypal: PayPal, receiver: Receiver) -> None:
    order = await paypal.approved()
    await paypal.call("POST", f"/v2/checkout/orders/{order['id']}/capture", {})

    def delivered() -> list[dict[str, Any]]:
        return [
            json.loads(body)
            for _, body in receiver
            if json.loads(body)["resource"].get("id") == order["id"]
            or json.loads(body)["resource"]
            .get("supplementary_data", {})
            .get("related_ids", {})
            .get("order_id")
            == order["id"]
        ]

    events = await eventually(lambda: delivered() if len(delivered()) >= 2 else None)
    assert [e["event_type"] for e in events] == [
        "CHECKOUT.ORDER.APPROVED",
        "PAYMENT.CAPTURE.COMPLETED",
    ]
    check_component("checkout_orders_v2", "order", events[0]["resource"])
    check_component("payments_payment_v2", "capture-2", events[1]["resource"])
    headers, body = next((h, b) for h, b in receiver if json.loads(b)["id"] == events[0]["id"])

    async def verify(event: dict[str, Any], **change: str) -> str:
        request = {
            "auth_algo": headers["paypal-auth-algo"],
            "cert_url": headers["paypal-cert-url"],
            "transmission_id": headers["paypal-transmission-id"],
            "transmission_sig": headers["paypal-transmission-sig"],
            "transmission_time": headers["paypal-transmission-time"],
            "webhook_id": receiver.webhook_id,
            "webhook_event": event,
            **change,
        }
        status, answer = await paypal.call(
            "POST", "/v1/notifications/verify-webhook-signature", request
        )
        assert status == 200
        return str(answer["verification_status"])

    event = json.loads(body)
    assert await verify(event) == "SUCCESS"
    assert await verify({**event, "summary": "forged"}) == "FAILURE"
    assert await verify(event, transmission_time="2020-01-01T00:00:00Z") == "FAILURE"
    assert await verify(event, webhook_id="OTHER") == "FAILURE"
    async with httpx.AsyncClient() as client:
        cert = await client.get(headers["paypal-cert-url"])
    assert cert.status_code == 200
    assert b"BEGIN CERTIFICATE" in cert.content

    status, listed = await paypal.call("GET", "/v1/notifications/webhooks-events")
    assert status == 200
    assert event["id"] in {e["id"] for e in listed["events"]}
    before = len(receiver)
    status, _ = await paypal.call(
        "POST", f"/v1/notifications/webhooks-events/{event['id']}/resend", {}
    )
    assert status == 202
    await eventually(lambda: len(receiver) > before or None)
    resent_headers, resent = receiver[-1]
    assert json.loads(resent)["id"] == event["id"]
    assert resent_headers["paypal-transmission-id"] != headers["paypal-transmission-id"]
    await asyncio.sleep(0)
