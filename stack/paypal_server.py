"""A local stand-in for PayPal's REST API: the part the payment service uses, in memory.

    python -m stack.paypal_server --host 127.0.0.1 --port 8430

Held to PayPal's published OpenAPI documents (`stack/paypal/spec/`): its request and response
bodies follow them, and its tests validate every answer against them and read it with the
official SDK's models. What it implements, what it adds for tests (the buyer behaviours chosen
by amount, the control routes under `/_standin/`) and what it leaves out is in
`stack/paypal/README.md`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import datetime as dt
import html
import json
import logging
import re
import secrets
import sys
import uuid
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

logger = logging.getLogger("micropay.paypal_server")

DEFAULT_CLIENT_ID = "micropay-local-client"
DEFAULT_CLIENT_SECRET = "micropay-local-secret"  # noqa: S105 - the stand-in's, not a real one

DECLINED_VALUE = "6.66"
"""A purchase of this value is approved, but its capture is DECLINED."""
PENDING_VALUE = "7.77"
"""A purchase of this value is captured PENDING (PENDING_REVIEW) until `/_standin/` says."""
REFUND_FAILS_VALUE = "1.13"
"""A refund of this value is refused (422 REFUND_FAILED_INSUFFICIENT_FUNDS)."""
MOCK_HEADER = "PayPal-Mock-Response"
"""PayPal's sandbox header for negative tests: `{"mock_application_codes": "ISSUE"}` makes the
call fail with that 422 issue."""

ERRORS_PAGE = "https://developer.paypal.com/api/rest/reference/orders/v2/errors/"
ZERO_DECIMAL = {"JPY", "HUF", "TWD"}
TOKEN_SECONDS = 32400
AUTH_ALGO = "SHA256withRSA"
CERT_NAME = "CERT-360caa42-fca2a594-standin"
DELIVERY_ATTEMPTS = 3


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _id(prefix: str = "") -> str:
    return prefix + secrets.token_hex(9).upper()[:17]


PAYER_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"


def _account_id() -> str:
    """A PayPal account id: 13 characters of PayPal's alphabet."""
    return "".join(secrets.choice(PAYER_ALPHABET) for _ in range(13))


SPEC_DIR = Path(__file__).resolve().parent / "paypal" / "spec"


def _issue_descriptions() -> dict[tuple[str, str], dict[str, str]]:
    """PayPal's own description of each error issue, per error schema of its documents."""
    found: dict[tuple[str, str], dict[str, str]] = {}

    def walk(node: Any, into: dict[str, str]) -> None:
        if isinstance(node, dict):
            props = node.get("properties")
            if isinstance(props, dict):
                issue = (props.get("issue") or {}).get("enum")
                text = (props.get("description") or {}).get("enum")
                if issue and text and len(issue) == 1 and len(text) == 1:
                    into.setdefault(issue[0], text[0])
            for value in node.values():
                walk(value, into)
        elif isinstance(node, list):
            for value in node:
                walk(value, into)

    for path in sorted(SPEC_DIR.glob("*.json")):
        for name, schema in json.loads(path.read_text())["components"]["schemas"].items():
            walk(schema, found.setdefault((path.stem, name), {}))
    return found


ISSUE_DESCRIPTIONS = _issue_descriptions()

ORDERS_422 = ("checkout_orders_v2", "422")
CAPTURE_422 = ("checkout_orders_v2", "orders.capture-422")
REFUND_422 = ("payments_payment_v2", "captures.refund-422")
ORDERS_400 = ("checkout_orders_v2", "400")
REFUND_400 = ("payments_payment_v2", "captures.refund-400")


def _error(
    status: int,
    name: str,
    message: str,
    issue: str | None = None,
    description: str = "",
    schema: tuple[str, str] | None = None,
) -> JSONResponse:
    """An error body as PayPal's `error` schema has it, in PayPal's words for the operation."""
    body: dict[str, Any] = {"name": name, "message": message, "debug_id": secrets.token_hex(6)}
    if issue:
        text = ISSUE_DESCRIPTIONS.get(schema or ("", ""), {}).get(issue) or description or message
        body["details"] = [{"issue": issue, "description": text}]
    body["links"] = [
        {
            "href": f"{ERRORS_PAGE}#{issue or name}",
            "rel": "information_link",
            "method": "GET",
        }
    ]
    return JSONResponse(body, status_code=status)


def _unprocessable(
    issue: str, description: str, schema: tuple[str, str] = ORDERS_422
) -> JSONResponse:
    return _error(
        422,
        "UNPROCESSABLE_ENTITY",
        "The requested action could not be performed, semantically incorrect, or failed "
        "business validation.",
        issue,
        description,
        schema,
    )


def _invalid(issue: str, description: str, schema: tuple[str, str] = ORDERS_400) -> JSONResponse:
    return _error(
        400,
        "INVALID_REQUEST",
        "Request is not well-formed, syntactically incorrect, or violates schema.",
        issue,
        description,
        schema,
    )


def _not_found(what: str) -> JSONResponse:
    del what  # PayPal does not repeat the id
    return _error(
        404,
        "RESOURCE_NOT_FOUND",
        "The specified resource does not exist.",
        "INVALID_RESOURCE_ID",
        "Specified resource ID does not exist. Please check the resource ID and try again.",
    )


def _valid_amount(amount: Any) -> tuple[str, str] | None:
    """(currency, value) of a well-formed PayPal money object, else None."""
    if not isinstance(amount, dict):
        return None
    currency, value = amount.get("currency_code"), amount.get("value")
    if not isinstance(currency, str) or not re.fullmatch(r"[A-Z]{3}", currency):
        return None
    if not isinstance(value, str) or not re.fullmatch(r"\d{1,10}(\.\d{1,2})?", value):
        return None
    return currency, value


def _cents(value: str, currency: str) -> int:
    """A value as integer minor units (the stand-in's own arithmetic)."""
    if currency in ZERO_DECIMAL:
        return int(value)
    whole, _, frac = value.partition(".")
    return int(whole) * 100 + int((frac + "00")[:2])


def _value(cents: int, currency: str) -> str:
    if currency in ZERO_DECIMAL:
        return str(cents)
    return f"{cents // 100}.{cents % 100:02d}"


def _money(cents: int, currency: str) -> dict[str, str]:
    return {"currency_code": currency, "value": _value(cents, currency)}


@dataclass
class Webhook:
    """A registered webhook: where events go, and which."""

    id: str
    url: str
    event_types: list[str]
    paused: bool = False
    """Deliveries are held in `queue` until resumed (control route, for ordering tests)."""
    queue: list[dict[str, Any]] = field(default_factory=list)

    def wants(self, event_type: str) -> bool:
        """Subscribed to this event type (or to every one, `*`)."""
        return "*" in self.event_types or event_type in self.event_types

    def as_json(self) -> dict[str, Any]:
        """The webhook as PayPal's `webhook` schema has it."""
        return {
            "id": self.id,
            "url": self.url,
            "event_types": [{"name": name} for name in self.event_types],
        }


@dataclass
class Store:
    """Everything the stand-in knows; empty at every start."""

    client_id: str
    client_secret: str
    base_url: str = ""
    tokens: dict[str, float] = field(default_factory=dict)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    order_meta: dict[str, dict[str, Any]] = field(default_factory=dict)
    captures: dict[str, str] = field(default_factory=dict)
    """capture id → order id."""
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    replies: dict[tuple[str, str], tuple[int, dict[str, Any]]] = field(default_factory=dict)
    """(operation, PayPal-Request-Id) → the first answer, replayed to a retry."""
    webhooks: dict[str, Webhook] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    """Every delivery attempt: event id, webhook id, transmission id, HTTP status."""


class Signer:
    """The stand-in's own certificate and key: webhooks are signed as PayPal signs them."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "messageverificationcerts")])
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=365))
            .sign(self.key, hashes.SHA256())
        )

    @staticmethod
    def message(transmission_id: str, time: str, webhook_id: str, body: bytes) -> bytes:
        """What PayPal signs: `<transmission id>|<time>|<webhook id>|<CRC32 of the body>`."""
        return f"{transmission_id}|{time}|{webhook_id}|{zlib.crc32(body)}".encode()

    def sign(self, message: bytes) -> str:
        """The base64 SHA256withRSA signature of a message."""
        signature = self.key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(signature).decode()

    def verifies(self, message: bytes, signature: str) -> bool:
        """Whether the signature is ours over this message."""
        try:
            raw = base64.b64decode(signature, validate=True)
            self.key.public_key().verify(raw, message, padding.PKCS1v15(), hashes.SHA256())
        except (InvalidSignature, ValueError, binascii.Error):
            return False
        return True

    def pem(self) -> bytes:
        """The certificate, PEM-encoded (what the cert URL serves)."""
        return self.cert.public_bytes(serialization.Encoding.PEM)


def event_body(event: dict[str, Any]) -> bytes:
    """The exact bytes of a delivery (PayPal's compact JSON)."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


def create_app(
    *,
    client_id: str = DEFAULT_CLIENT_ID,
    client_secret: str = DEFAULT_CLIENT_SECRET,
    base_url: str | None = None,
) -> FastAPI:
    """The stand-in as an ASGI app, empty; `base_url` is how links name it (else the request's)."""
    store = Store(client_id=client_id, client_secret=client_secret, base_url=base_url or "")
    signer = Signer()
    app = FastAPI(title="PayPal REST API stand-in", docs_url=None, redoc_url=None)
    app.state.store = store
    background: set[asyncio.Task[None]] = set()

    def base(request: Request) -> str:
        return store.base_url or str(request.base_url).rstrip("/")

    def authorized(request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        expires = store.tokens.get(token)
        return scheme.lower() == "bearer" and expires is not None and expires > _epoch()

    def unauthorized() -> JSONResponse:
        return JSONResponse(
            {"error": "invalid_token", "error_description": "Token signature verification failed"},
            status_code=401,
        )

    async def json_body(request: Request) -> dict[str, Any] | None:
        try:
            body = await request.json()
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def replay(operation: str, request: Request) -> JSONResponse | None:
        request_id = request.headers.get("paypal-request-id")
        if request_id and (operation, request_id) in store.replies:
            status, body = store.replies[(operation, request_id)]
            return JSONResponse(body, status_code=status)
        return None

    def remember(operation: str, request: Request, status: int, body: dict[str, Any]) -> None:
        request_id = request.headers.get("paypal-request-id")
        if request_id:
            store.replies[(operation, request_id)] = (status, body)

    def mocked(request: Request, schema: tuple[str, str]) -> JSONResponse | None:
        raw = request.headers.get(MOCK_HEADER.lower())
        if not raw:
            return None
        try:
            code = json.loads(raw).get("mock_application_codes")
        except (ValueError, AttributeError):
            return _invalid("INVALID_PARAMETER_VALUE", f"{MOCK_HEADER} is not JSON.")
        return _unprocessable(str(code), "Mocked by the PayPal-Mock-Response header.", schema)

    # --- events -----------------------------------------------------------------------------

    def emit(event_type: str, resource_type: str, resource: dict[str, Any], summary: str) -> None:
        """Record an event and deliver it to every webhook that wants it."""
        event_id = "WH-" + _id() + "-" + _id()
        event = {
            "id": event_id,
            "create_time": _now(),
            "resource_type": resource_type,
            "event_type": event_type,
            "summary": summary,
            "resource": json.loads(json.dumps(resource)),
            "event_version": "1.0",
            "resource_version": "2.0",
            "links": [
                {
                    "href": f"{store.base_url}/v1/notifications/webhooks-events/{event_id}",
                    "rel": "self",
                    "method": "GET",
                },
                {
                    "href": f"{store.base_url}/v1/notifications/webhooks-events/{event_id}/resend",
                    "rel": "resend",
                    "method": "POST",
                },
            ],
        }
        store.events.append(event)
        deliver(event, [w for w in store.webhooks.values() if w.wants(event_type)])

    def deliver(event: dict[str, Any], webhooks: Iterable[Webhook]) -> None:
        for webhook in webhooks:
            if webhook.paused:
                webhook.queue.append(event)
                continue
            task = asyncio.get_running_loop().create_task(send(event, webhook))
            background.add(task)
            task.add_done_callback(background.discard)

    async def send(event: dict[str, Any], webhook: Webhook) -> None:
        body = event_body(event)
        async with httpx.AsyncClient(timeout=10) as client:
            for attempt in range(DELIVERY_ATTEMPTS):
                transmission_id = str(uuid.uuid4())
                time = dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
                headers = {
                    "Content-Type": "application/json",
                    "PAYPAL-AUTH-ALGO": AUTH_ALGO,
                    "PAYPAL-CERT-URL": f"{store.base_url}/v1/notifications/certs/{CERT_NAME}",
                    "PAYPAL-TRANSMISSION-ID": transmission_id,
                    "PAYPAL-TRANSMISSION-TIME": time,
                    "PAYPAL-TRANSMISSION-SIG": signer.sign(
                        Signer.message(transmission_id, time, webhook.id, body)
                    ),
                }
                status = 0
                try:
                    response = await client.post(webhook.url, content=body, headers=headers)
                    status = response.status_code
                except httpx.HTTPError as exc:
                    logger.warning("delivering %s to %s failed: %s", event["id"], webhook.url, exc)
                store.deliveries.append(
                    {
                        "event_id": event["id"],
                        "event_type": event["event_type"],
                        "webhook_id": webhook.id,
                        "transmission_id": transmission_id,
                        "status": status,
                    }
                )
                if 200 <= status < 300:
                    return
                await asyncio.sleep(0.5 * 2**attempt)

    # --- OAuth2 -----------------------------------------------------------------------------

    @app.post("/v1/oauth2/token")
    async def token(request: Request) -> Response:
        header = request.headers.get("authorization", "")
        scheme, _, encoded = header.partition(" ")
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except (ValueError, binascii.Error):
            user = password = ""
        form = dict(parse_qsl((await request.body()).decode(errors="replace")))
        if scheme.lower() != "basic" or (user, password) != (
            store.client_id,
            store.client_secret,
        ):
            return JSONResponse(
                {"error": "invalid_client", "error_description": "Client Authentication failed"},
                status_code=401,
            )
        if form.get("grant_type") != "client_credentials":
            return JSONResponse(
                {"error": "unsupported_grant_type", "error_description": "Grant Type is NULL"},
                status_code=400,
            )
        access = "A21AA" + secrets.token_urlsafe(48)
        store.tokens[access] = _epoch() + TOKEN_SECONDS
        return JSONResponse(
            {
                "scope": "https://uri.paypal.com/services/payments/payment "
                "https://uri.paypal.com/services/payments/refund "
                "https://uri.paypal.com/services/applications/webhooks",
                "access_token": access,
                "token_type": "Bearer",
                "app_id": "APP-80W284485P519543T",
                "expires_in": TOKEN_SECONDS,
                "nonce": f"{_now()}{secrets.token_hex(8)}",
            }
        )

    # --- orders -----------------------------------------------------------------------------

    def order_links(request: Request, order: dict[str, Any]) -> list[dict[str, str]]:
        root = base(request)
        links = [
            {"href": f"{root}/v2/checkout/orders/{order['id']}", "rel": "self", "method": "GET"}
        ]
        if order["status"] in ("CREATED", "PAYER_ACTION_REQUIRED"):
            rel = "payer-action" if order["status"] == "PAYER_ACTION_REQUIRED" else "approve"
            links.append(
                {"href": f"{root}/checkoutnow?token={order['id']}", "rel": rel, "method": "GET"}
            )
        if order["status"] == "APPROVED":
            links.append(
                {
                    "href": f"{root}/v2/checkout/orders/{order['id']}/capture",
                    "rel": "capture",
                    "method": "POST",
                }
            )
        return links

    def show_order(request: Request, order_id: str) -> dict[str, Any]:
        order = store.orders[order_id]
        order["links"] = order_links(request, order)
        return order

    @app.post("/v2/checkout/orders")
    async def create_order(request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        if (replayed := replay("create_order", request)) is not None:
            return replayed
        if (mock := mocked(request, ORDERS_422)) is not None:
            return mock
        body = await json_body(request)
        if body is None:
            return _invalid("MALFORMED_REQUEST_JSON", "The request JSON is not well formed.")
        if body.get("intent") not in ("CAPTURE", "AUTHORIZE"):
            return _invalid("INVALID_PARAMETER_VALUE", "intent must be CAPTURE or AUTHORIZE.")
        if body["intent"] != "CAPTURE":
            return _invalid("INVALID_PARAMETER_VALUE", "The stand-in captures only (CAPTURE).")
        units = body.get("purchase_units")
        if not isinstance(units, list) or len(units) != 1 or not isinstance(units[0], dict):
            return _invalid("INVALID_ARRAY_MAX_ITEMS", "One purchase unit, please.")
        unit = units[0]
        amount = _valid_amount(unit.get("amount"))
        if amount is None:
            return _invalid("INVALID_PARAMETER_VALUE", "purchase_units[0].amount is malformed.")
        currency, value = amount
        if currency in ZERO_DECIMAL and "." in value:
            return _unprocessable("DECIMAL_PRECISION", f"{currency} takes no decimals.")
        if _cents(value, currency) <= 0:
            return _unprocessable("CANNOT_BE_ZERO_OR_NEGATIVE", "The amount must be positive.")
        context = (
            ((body.get("payment_source") or {}).get("paypal") or {}).get("experience_context")
            or body.get("application_context")
            or {}
        )
        order_id = _id()
        order: dict[str, Any] = {
            "id": order_id,
            "intent": "CAPTURE",
            "status": "PAYER_ACTION_REQUIRED" if body.get("payment_source") else "CREATED",
            "purchase_units": [
                {
                    "reference_id": unit.get("reference_id", "default"),
                    "amount": {"currency_code": currency, "value": value},
                    "payee": {
                        "email_address": "merchant@micropay.example",
                        "merchant_id": "MPSTAND2NPAYE",
                    },
                    **{
                        key: unit[key]
                        for key in ("custom_id", "invoice_id", "description")
                        if isinstance(unit.get(key), str)
                    },
                }
            ],
            "create_time": _now(),
        }
        if body.get("payment_source"):
            order["payment_source"] = {"paypal": {}}
        store.orders[order_id] = order
        store.order_meta[order_id] = {
            "return_url": context.get("return_url"),
            "cancel_url": context.get("cancel_url"),
        }
        answer = show_order(request, order_id)
        remember("create_order", request, 200, answer)
        logger.info("order %s created: %s %s", order_id, value, currency)
        return JSONResponse(answer, status_code=200)

    @app.get("/v2/checkout/orders/{order_id}")
    async def get_order(order_id: str, request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        if order_id not in store.orders:
            return _not_found(order_id)
        return JSONResponse(show_order(request, order_id))

    @app.post("/v2/checkout/orders/{order_id}/capture")
    async def capture_order(order_id: str, request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        if (replayed := replay(f"capture:{order_id}", request)) is not None:
            return replayed
        if (mock := mocked(request, CAPTURE_422)) is not None:
            return mock
        order = store.orders.get(order_id)
        if order is None:
            return _not_found(order_id)
        if order["status"] == "COMPLETED":
            return _unprocessable("ORDER_ALREADY_CAPTURED", "", CAPTURE_422)
        if order["status"] != "APPROVED":
            return _unprocessable("ORDER_NOT_APPROVED", "", CAPTURE_422)
        unit = order["purchase_units"][0]
        value = unit["amount"]["value"]
        currency = unit["amount"]["currency_code"]
        capture_id = _id()
        status = "COMPLETED"
        if value == DECLINED_VALUE:
            status = "DECLINED"
        elif value == PENDING_VALUE:
            status = "PENDING"
        root = base(request)
        capture: dict[str, Any] = {
            "id": capture_id,
            "status": status,
            "amount": dict(unit["amount"]),
            "final_capture": True,
            "seller_protection": {
                "status": "ELIGIBLE",
                "dispute_categories": ["ITEM_NOT_RECEIVED", "UNAUTHORIZED_TRANSACTION"],
            },
            "links": [
                {
                    "href": f"{root}/v2/payments/captures/{capture_id}",
                    "rel": "self",
                    "method": "GET",
                },
                {
                    "href": f"{root}/v2/payments/captures/{capture_id}/refund",
                    "rel": "refund",
                    "method": "POST",
                },
                {"href": f"{root}/v2/checkout/orders/{order_id}", "rel": "up", "method": "GET"},
            ],
            "create_time": _now(),
            "update_time": _now(),
        }
        for key in ("custom_id", "invoice_id"):
            if key in unit:
                capture[key] = unit[key]
        if status == "PENDING":
            capture["status_details"] = {"reason": "PENDING_REVIEW"}
        if status == "COMPLETED":
            fee = max(_cents(value, currency) * 349 // 10000 + 49, 1)
            capture["seller_receivable_breakdown"] = {
                "gross_amount": dict(unit["amount"]),
                "paypal_fee": _money(fee, currency),
                "net_amount": _money(_cents(value, currency) - fee, currency),
            }
        unit["payments"] = {"captures": [capture]}
        order["status"] = "COMPLETED"
        order["update_time"] = _now()
        store.captures[capture_id] = order_id
        answer = show_order(request, order_id)
        remember(f"capture:{order_id}", request, 201, answer)
        emit_capture(capture_id)
        return JSONResponse(answer, status_code=201)

    def find_capture(capture_id: str) -> dict[str, Any] | None:
        order_id = store.captures.get(capture_id)
        if order_id is None:
            return None
        for capture in store.orders[order_id]["purchase_units"][0]["payments"]["captures"]:
            if capture["id"] == capture_id:
                return capture  # type: ignore[no-any-return]
        return None

    def capture_resource(capture_id: str) -> dict[str, Any]:
        capture = dict(find_capture(capture_id) or {})
        capture["supplementary_data"] = {"related_ids": {"order_id": store.captures[capture_id]}}
        return capture

    def emit_capture(capture_id: str) -> None:
        capture = capture_resource(capture_id)
        event_type = {
            "COMPLETED": "PAYMENT.CAPTURE.COMPLETED",
            "PENDING": "PAYMENT.CAPTURE.PENDING",
            "DECLINED": "PAYMENT.CAPTURE.DENIED",
        }[capture["status"]]
        value = capture["amount"]["value"]
        emit(event_type, "capture", capture, f"Payment {capture['status'].lower()} for ${value}")

    # --- the buyer's side: the approval page ------------------------------------------------

    @app.get("/checkoutnow", response_class=HTMLResponse)
    async def approval_page(token: str = "") -> Response:
        order = store.orders.get(token)
        if order is None:
            return HTMLResponse("<h1>This checkout has expired.</h1>", status_code=404)
        amount = order["purchase_units"][0]["amount"]
        open_ = order["status"] in ("CREATED", "PAYER_ACTION_REQUIRED")
        token_html = html.escape(token, quote=True)
        buttons = (
            f'<form method="post" action="/checkoutnow/approve">'
            f'<input type="hidden" name="token" value="{token_html}">'
            f'<button type="submit" id="approve">Approve</button></form>'
            f'<form method="post" action="/checkoutnow/cancel">'
            f'<input type="hidden" name="token" value="{token_html}">'
            f'<button type="submit" id="cancel">Cancel</button></form>'
            if open_
            else f"<p>This order is {html.escape(order['status'].lower())}.</p>"
        )
        return HTMLResponse(
            "<!doctype html><html lang=en><head><meta charset=utf-8>"
            "<title>PayPal Checkout (stand-in)</title></head><body>"
            "<h1>PayPal Checkout (local stand-in)</h1>"
            f"<p>Pay <strong>{html.escape(amount['value'])} "
            f"{html.escape(amount['currency_code'])}</strong> to MicroPay, as "
            "sb-buyer@personal.example.com.</p>"
            f"{buttons}</body></html>"
        )

    def back_to(url: str | None, params: dict[str, str]) -> str:
        parts = urlsplit(url or "/")
        query = parse_qsl(parts.query) + list(params.items())
        return urlunsplit(parts._replace(query=urlencode(query)))

    async def form_token(request: Request) -> str:
        form = dict(parse_qsl((await request.body()).decode(errors="replace")))
        return form.get("token", "")

    @app.post("/checkoutnow/approve")
    async def approve(request: Request) -> Response:
        order_id = await form_token(request)
        order = store.orders.get(order_id)
        if order is None:
            return HTMLResponse("<h1>This checkout has expired.</h1>", status_code=404)
        if order["status"] not in ("CREATED", "PAYER_ACTION_REQUIRED"):
            return HTMLResponse("<h1>This order is no longer open.</h1>", status_code=409)
        payer_id = _account_id()
        order["status"] = "APPROVED"
        order["update_time"] = _now()
        order["payer"] = {
            "name": {"given_name": "Sandbox", "surname": "Buyer"},
            "email_address": "sb-buyer@personal.example.com",
            "payer_id": payer_id,
        }
        order["payment_source"] = {
            "paypal": {
                "email_address": "sb-buyer@personal.example.com",
                "account_id": payer_id,
                "account_status": "VERIFIED",
                "name": {"given_name": "Sandbox", "surname": "Buyer"},
            }
        }
        emit(
            "CHECKOUT.ORDER.APPROVED",
            "checkout-order",
            show_order(request, order_id),
            "An order has been approved by buyer",
        )
        target = back_to(
            store.order_meta[order_id]["return_url"], {"token": order_id, "PayerID": payer_id}
        )
        return RedirectResponse(target, status_code=303)

    @app.post("/checkoutnow/cancel")
    async def cancel(request: Request) -> Response:
        order_id = await form_token(request)
        if order_id not in store.orders:
            return HTMLResponse("<h1>This checkout has expired.</h1>", status_code=404)
        # As at PayPal, the order itself stays as it was: nothing tells the merchant.
        target = back_to(store.order_meta[order_id]["cancel_url"], {"token": order_id})
        return RedirectResponse(target, status_code=303)

    # --- captures and refunds ---------------------------------------------------------------

    def show_refund(request: Request, refund: dict[str, Any]) -> dict[str, Any]:
        root = base(request)
        refund["links"] = [
            {"href": f"{root}/v2/payments/refunds/{refund['id']}", "rel": "self", "method": "GET"},
            {
                "href": f"{root}/v2/payments/captures/{refund['_capture_id']}",
                "rel": "up",
                "method": "GET",
            },
        ]
        return {k: v for k, v in refund.items() if not k.startswith("_")}

    @app.get("/v2/payments/captures/{capture_id}")
    async def get_capture(capture_id: str, request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        if find_capture(capture_id) is None:
            return _not_found(capture_id)
        return JSONResponse(capture_resource(capture_id))

    @app.post("/v2/payments/captures/{capture_id}/refund")
    async def refund_capture(capture_id: str, request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        if (replayed := replay(f"refund:{capture_id}", request)) is not None:
            return replayed
        if (mock := mocked(request, REFUND_422)) is not None:
            return mock
        capture = find_capture(capture_id)
        if capture is None:
            return _not_found(capture_id)
        body = await json_body(request)
        if body is None:
            body = {}
        currency = capture["amount"]["currency_code"]
        captured = _cents(capture["amount"]["value"], currency)
        refunded = sum(
            _cents(r["amount"]["value"], currency)
            for r in store.refunds.values()
            if r["_capture_id"] == capture_id and r["status"] in ("COMPLETED", "PENDING")
        )
        if capture["status"] not in ("COMPLETED", "PARTIALLY_REFUNDED"):
            return _unprocessable(
                "CAPTURE_FULLY_REFUNDED"
                if capture["status"] == "REFUNDED"
                else "REFUND_NOT_ALLOWED",
                "",
                REFUND_422,
            )
        if "amount" in body:
            amount = _valid_amount(body["amount"])
            if amount is None:
                return _invalid("INVALID_PARAMETER_VALUE", "amount is malformed.", REFUND_400)
            if amount[0] != currency:
                return _unprocessable("REFUND_CAPTURE_CURRENCY_MISMATCH", "", REFUND_422)
            cents = _cents(amount[1], currency)
        else:
            cents = captured - refunded
        if cents <= 0:
            return _unprocessable("CANNOT_BE_ZERO_OR_NEGATIVE", "", REFUND_422)
        if cents > captured - refunded:
            return _unprocessable("REFUND_AMOUNT_EXCEEDED", "", REFUND_422)
        if _value(cents, currency) == REFUND_FAILS_VALUE:
            return _unprocessable("REFUND_FAILED_INSUFFICIENT_FUNDS", "", REFUND_422)
        refund = record_refund(capture_id, capture, cents, body)
        answer = show_refund(request, refund)
        remember(f"refund:{capture_id}", request, 201, answer)
        emit(
            "PAYMENT.CAPTURE.REFUNDED",
            "refund",
            answer,
            f"A ${answer['amount']['value']} {currency} capture payment was refunded",
        )
        return JSONResponse(answer, status_code=201)

    def record_refund(
        capture_id: str, capture: dict[str, Any], cents: int, body: dict[str, Any]
    ) -> dict[str, Any]:
        currency = capture["amount"]["currency_code"]
        refund: dict[str, Any] = {
            "id": _id(),
            "status": "COMPLETED",
            "amount": _money(cents, currency),
            "seller_payable_breakdown": {
                "gross_amount": _money(cents, currency),
                "paypal_fee": _money(0, currency),
                "net_amount": _money(cents, currency),
                "total_refunded_amount": _money(cents, currency),
            },
            "create_time": _now(),
            "update_time": _now(),
            "_capture_id": capture_id,
        }
        for key in ("custom_id", "invoice_id", "note_to_payer"):
            if isinstance(body.get(key), str):
                refund[key] = body[key]
        store.refunds[refund["id"]] = refund
        total = _cents(capture["amount"]["value"], currency)
        refunded = sum(
            _cents(r["amount"]["value"], currency)
            for r in store.refunds.values()
            if r["_capture_id"] == capture_id and r["status"] == "COMPLETED"
        )
        capture["status"] = "REFUNDED" if refunded >= total else "PARTIALLY_REFUNDED"
        capture["update_time"] = _now()
        return refund

    @app.get("/v2/payments/refunds/{refund_id}")
    async def get_refund(refund_id: str, request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        refund = store.refunds.get(refund_id)
        if refund is None:
            return _not_found(refund_id)
        return JSONResponse(show_refund(request, refund))

    # --- webhooks ---------------------------------------------------------------------------

    @app.post("/v1/notifications/webhooks")
    async def create_webhook(request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        body = await json_body(request)
        url = (body or {}).get("url")
        types = (body or {}).get("event_types")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            return _invalid("INVALID_PARAMETER_VALUE", "url must be an http(s) URL.")
        if not isinstance(types, list) or not types:
            return _invalid("INVALID_PARAMETER_VALUE", "event_types must list event types.")
        names = [str(t.get("name")) for t in types if isinstance(t, dict) and t.get("name")]
        if any(w.url == url for w in store.webhooks.values()):
            return _error(400, "WEBHOOK_URL_ALREADY_EXISTS", "Webhook URL already exists.")
        webhook = Webhook(id=_id(), url=url, event_types=names)
        store.webhooks[webhook.id] = webhook
        return JSONResponse(webhook.as_json(), status_code=201)

    @app.get("/v1/notifications/webhooks")
    async def list_webhooks(request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        return JSONResponse({"webhooks": [w.as_json() for w in store.webhooks.values()]})

    @app.get("/v1/notifications/certs/{name}")
    async def certificate(name: str) -> Response:
        if name != CERT_NAME:
            return _not_found(name)
        return Response(signer.pem(), media_type="application/x-pem-file")

    @app.post("/v1/notifications/verify-webhook-signature")
    async def verify(request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        body = await json_body(request)
        required = (
            "auth_algo",
            "cert_url",
            "transmission_id",
            "transmission_sig",
            "transmission_time",
            "webhook_id",
            "webhook_event",
        )
        if body is None or any(body.get(name) in (None, "") for name in required):
            return _error(400, "VALIDATION_ERROR", "Invalid request - see details")
        ours = f"{store.base_url}/v1/notifications/certs/{CERT_NAME}"
        good = (
            body["auth_algo"] == AUTH_ALGO
            and body["cert_url"] == ours
            and body["webhook_id"] in store.webhooks
            and isinstance(body["webhook_event"], dict)
            and signer.verifies(
                Signer.message(
                    str(body["transmission_id"]),
                    str(body["transmission_time"]),
                    str(body["webhook_id"]),
                    event_body(body["webhook_event"]),
                ),
                str(body["transmission_sig"]),
            )
        )
        return JSONResponse({"verification_status": "SUCCESS" if good else "FAILURE"})

    @app.get("/v1/notifications/webhooks-events")
    async def list_events(request: Request, event_type: str | None = None) -> Response:
        if not authorized(request):
            return unauthorized()
        events = [e for e in store.events if event_type in (None, e["event_type"])]
        events = list(reversed(events))
        return JSONResponse({"events": events, "count": len(events), "links": []})

    @app.get("/v1/notifications/webhooks-events/{event_id}")
    async def get_event(event_id: str, request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        for event in store.events:
            if event["id"] == event_id:
                return JSONResponse(event)
        return _not_found(event_id)

    @app.post("/v1/notifications/webhooks-events/{event_id}/resend")
    async def resend(event_id: str, request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        body = await json_body(request) or {}
        ids = body.get("webhook_ids") or list(store.webhooks)
        for event in store.events:
            if event["id"] == event_id:
                deliver(event, [store.webhooks[i] for i in ids if i in store.webhooks])
                return JSONResponse(event, status_code=202)
        return _not_found(event_id)

    # --- control routes for tests: what PayPal's own side would do ------------------------

    @app.post("/_standin/captures/{capture_id}/{outcome}")
    async def settle_capture(capture_id: str, outcome: str, request: Request) -> Response:
        """A PENDING capture completes (`complete`) or is denied (`deny`), with its webhook;
        `reverse` takes a completed capture back (a chargeback), as a refund PayPal made."""
        capture = find_capture(capture_id)
        if capture is None:
            return _not_found(capture_id)
        if outcome in ("complete", "deny"):
            if capture["status"] != "PENDING":
                return _unprocessable("CAPTURE_NOT_PENDING", f"The capture is {capture['status']}.")
            capture["status"] = "COMPLETED" if outcome == "complete" else "DECLINED"
            capture.pop("status_details", None)
            capture["update_time"] = _now()
            emit_capture(capture_id)
            return JSONResponse(capture_resource(capture_id))
        if outcome == "reverse":
            currency = capture["amount"]["currency_code"]
            left = _cents(capture["amount"]["value"], currency) - sum(
                _cents(r["amount"]["value"], currency)
                for r in store.refunds.values()
                if r["_capture_id"] == capture_id and r["status"] == "COMPLETED"
            )
            if capture["status"] not in ("COMPLETED", "PARTIALLY_REFUNDED") or left <= 0:
                return _unprocessable("REFUND_NOT_ALLOWED", f"The capture is {capture['status']}.")
            refund = record_refund(capture_id, capture, left, {"note_to_payer": "Chargeback"})
            capture["status"] = "REVERSED"
            answer = show_refund(request, refund)
            emit("PAYMENT.CAPTURE.REVERSED", "refund", answer, "A payment capture was reversed")
            return JSONResponse(answer)
        return _invalid("INVALID_PARAMETER_VALUE", "complete, deny or reverse")

    @app.post("/_standin/webhooks/{webhook_id}/pause")
    async def pause(webhook_id: str) -> Response:
        """Hold this webhook's deliveries until it is resumed."""
        webhook = store.webhooks.get(webhook_id)
        if webhook is None:
            return _not_found(webhook_id)
        webhook.paused = True
        return JSONResponse({"paused": True, "queued": len(webhook.queue)})

    @app.post("/_standin/webhooks/{webhook_id}/resume")
    async def resume(webhook_id: str, request: Request) -> Response:
        """Deliver what was held, one after another (`{"order": "reverse"}`: newest first),
        each answered before the next is sent, then deliver as usual again; or drop it all
        (`{"order": "drop"}`: deliveries that never arrive)."""
        webhook = store.webhooks.get(webhook_id)
        if webhook is None:
            return _not_found(webhook_id)
        order = ((await json_body(request)) or {}).get("order", "sent")
        held, webhook.queue, webhook.paused = webhook.queue, [], False
        if order == "drop":
            return JSONResponse({"delivered": [], "dropped": [e["id"] for e in held]})
        if order == "reverse":
            held.reverse()
        for event in held:
            await send(event, webhook)
        return JSONResponse({"delivered": [e["id"] for e in held]})

    @app.get("/_standin/deliveries")
    async def deliveries() -> Response:
        """Every webhook delivery attempt so far, oldest first."""
        return JSONResponse({"deliveries": store.deliveries})

    return app


def _epoch() -> float:
    return dt.datetime.now(dt.UTC).timestamp()


def main(argv: list[str] | None = None) -> None:
    """Serve the stand-in until interrupted."""
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8430)
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    parser.add_argument("--client-secret", default=DEFAULT_CLIENT_SECRET)
    parser.add_argument("--quiet", action="store_true", help="log warnings only")
    args = parser.parse_args(argv)
    level = logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, stream=sys.stderr)
    app = create_app(
        client_id=args.client_id,
        client_secret=args.client_secret,
        base_url=f"http://{args.host}:{args.port}",
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
