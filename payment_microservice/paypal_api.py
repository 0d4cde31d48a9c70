"""PayPal's REST API (Orders v2, Payments v2, webhook verification), reduced to what we use.

PayPal's official Python SDK (`paypal-server-sdk`) is synchronous (requests, through apimatic
core): every call would hold a worker thread for as long as PayPal takes, and its token cache
and retries are its own. So the calls go through `httpx.AsyncClient`, as every other outbound
call of the service does, and PayPal's answers are read with the SDK's own models (`Order`,
`Refund`, `OAuthToken`), so the fields we rely on are the ones PayPal's SDK documents.

The same code talks to PayPal (sandbox or live) and to the local stand-in
(`stack/paypal_server.py`): only `PAYPAL_API_BASE` differs. Every call that creates something
carries `PayPal-Request-Id`, derived from our payment or refund id, so a retried call (ours, the
client's, the reconciler's, a webhook's) gets PayPal's first answer again and never a second
order, capture or refund. Answers become the small immutable records below, and errors two
exceptions: `PayPalRefused` (PayPal answered no) and `PayPalUnavailable` (no usable answer).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
from paypalserversdk.models.o_auth_token import OAuthToken
from paypalserversdk.models.order import Order
from paypalserversdk.models.refund import Refund as PayPalRefund

from micropay_common.money import major_units, minor_unit_exponent
from payment_microservice.settings import PaymentSettings

logger = logging.getLogger("micropay.payment.paypal")

TRANSMISSION_HEADERS = (
    "paypal-auth-algo",
    "paypal-cert-url",
    "paypal-transmission-id",
    "paypal-transmission-sig",
    "paypal-transmission-time",
)
"""The headers PayPal signs a webhook delivery with, as verify-webhook-signature names them."""

# A token is renewed this long before PayPal says it expires.
TOKEN_MARGIN_SECONDS = 60.0


def to_value(amount: int, currency: str) -> str:
    """Minor units as PayPal's decimal string (1050 USD is "10.50", 1050 JPY is "1050")."""
    return major_units(amount, currency)


def to_minor(value: str | None, currency: str | None) -> int | None:
    """PayPal's decimal string as minor units; None when it is not an exact amount."""
    if value is None or currency is None:
        return None
    try:
        scaled = Decimal(value) * 10 ** minor_unit_exponent(currency)
    except InvalidOperation:
        return None
    return int(scaled) if scaled == scaled.to_integral_value() else None


@dataclass(frozen=True)
class OrderState:
    """An order as far as a payment's outcome depends on it."""

    id: str
    status: str
    """PayPal's: CREATED, PAYER_ACTION_REQUIRED, APPROVED, COMPLETED, VOIDED, SAVED."""
    approve_url: str | None = None
    amount: int | None = None
    currency: str | None = None
    payment_id: str | None = None
    """Our payment id, from the purchase unit's `custom_id`."""
    capture_id: str | None = None
    capture_status: str | None = None
    """COMPLETED, PENDING, DECLINED, FAILED, REFUNDED, PARTIALLY_REFUNDED."""
    capture_reason: str | None = None
    """`status_details.reason` of a capture that is not COMPLETED."""


@dataclass(frozen=True)
class PayPalRefundState:
    """A refund of a capture, as PayPal has it."""

    id: str
    status: str
    """PayPal's: COMPLETED, PENDING, FAILED, CANCELLED."""
    amount: int | None
    currency: str | None
    capture_id: str | None
    refund_id: str | None = None
    """Our refund id, from its `custom_id`, when we made it."""
    reason: str | None = None


class PayPalRefused(Exception):
    """PayPal answered and said no (an order not approved, an amount too large)."""

    def __init__(self, message: str, *, code: str | None, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        """PayPal's issue (`ORDER_NOT_APPROVED`) or error name."""
        self.status = status


class PayPalObjectMissing(PayPalRefused):
    """PayPal has no object with this id (a forged or foreign id, or an expired order)."""


class PayPalUnavailable(Exception):
    """PayPal could not be reached, timed out, or failed on its side, retries included."""


class PayPalNotConfigured(Exception):
    """No PayPal REST app is configured (PAYPAL_CLIENT_ID and PAYPAL_CLIENT_SECRET)."""


def _get(model: Any, *names: str) -> Any:
    """A nested attribute of an SDK model; None where any step is missing or unset."""
    value = model
    for name in names:
        value = getattr(value, name, None)
        if value is None or type(value).__name__ == "SkipType":
            return None
    return value


def order_state(data: dict[str, Any]) -> OrderState:
    """An OrderState from an order as JSON, read through the SDK's `Order` model."""
    order = Order.from_dictionary(data)
    units = _get(order, "purchase_units") or []
    unit = units[0] if units else None
    currency = _get(unit, "amount", "currency_code")
    captures = _get(unit, "payments", "captures") or []
    capture = captures[-1] if captures else None
    approve = None
    for link in _get(order, "links") or []:
        if _get(link, "rel") in ("approve", "payer-action"):
            approve = _get(link, "href")
    return OrderState(
        id=str(order.id),
        status=str(order.status),
        approve_url=approve,
        amount=to_minor(_get(unit, "amount", "value"), currency),
        currency=currency,
        payment_id=_get(unit, "custom_id"),
        capture_id=_get(capture, "id"),
        capture_status=_get(capture, "status"),
        capture_reason=_get(capture, "status_details", "reason"),
    )


def refund_state(data: dict[str, Any]) -> PayPalRefundState:
    """A PayPalRefundState from a refund as JSON, read through the SDK's `Refund` model."""
    refund = PayPalRefund.from_dictionary(data)
    currency = _get(refund, "amount", "currency_code")
    capture_id = None
    for link in _get(refund, "links") or []:
        href = _get(link, "href")
        if _get(link, "rel") == "up" and isinstance(href, str) and "/captures/" in href:
            capture_id = href.rstrip("/").rsplit("/", 1)[-1]
    return PayPalRefundState(
        id=str(refund.id),
        status=str(refund.status),
        amount=to_minor(_get(refund, "amount", "value"), currency),
        currency=currency,
        capture_id=capture_id,
        refund_id=_get(refund, "custom_id"),
        reason=_get(refund, "status_details", "reason"),
    )


def _problem(response: httpx.Response) -> tuple[str | None, str]:
    """PayPal's issue (or error name) and message from an error answer."""
    try:
        body = response.json()
    except ValueError:
        return None, response.text[:200]
    if not isinstance(body, dict):
        return None, str(body)[:200]
    details = body.get("details") or []
    issue = details[0].get("issue") if details and isinstance(details[0], dict) else None
    code = issue or body.get("name") or body.get("error")
    message = body.get("message") or body.get("error_description") or str(code)
    return (str(code) if code else None), str(message)


class PayPalApi:
    """The PayPal calls of the payment service."""

    def __init__(self, settings: PaymentSettings, client: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self.client = client or httpx.AsyncClient(
            base_url=settings.paypal_api_base.rstrip("/"),
            timeout=settings.paypal_timeout_seconds,
        )
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = asyncio.Lock()

    async def create_order(
        self,
        *,
        payment_id: str,
        amount: int,
        currency: str,
        description: str | None,
        return_url: str,
        cancel_url: str,
        request_id: str,
    ) -> OrderState:
        """Create an order to capture (`intent: CAPTURE`) that the buyer approves at PayPal."""
        unit: dict[str, Any] = {
            "reference_id": "default",
            "custom_id": payment_id,
            "amount": {"currency_code": currency, "value": to_value(amount, currency)},
        }
        if description:
            unit["description"] = description[:127]
        body = {
            "intent": "CAPTURE",
            "purchase_units": [unit],
            "payment_source": {
                "paypal": {
                    "experience_context": {
                        "return_url": return_url,
                        "cancel_url": cancel_url,
                        "user_action": "PAY_NOW",
                        "shipping_preference": "NO_SHIPPING",
                    }
                }
            },
        }
        data = await self._call("POST", "/v2/checkout/orders", json=body, request_id=request_id)
        return order_state(data)

    async def get_order(self, order_id: str) -> OrderState:
        """The order as PayPal has it now."""
        return order_state(await self._call("GET", f"/v2/checkout/orders/{order_id}"))

    async def capture_order(self, order_id: str, *, request_id: str) -> OrderState:
        """Capture an approved order; one already captured is read back instead."""
        try:
            data = await self._call(
                "POST", f"/v2/checkout/orders/{order_id}/capture", json={}, request_id=request_id
            )
        except PayPalRefused as exc:
            if exc.code == "ORDER_ALREADY_CAPTURED":
                return await self.get_order(order_id)
            raise
        return order_state(data)

    async def refund_capture(
        self, *, capture_id: str, amount: int, currency: str, refund_id: str, request_id: str
    ) -> PayPalRefundState:
        """Refund part or all of a capture."""
        body = {
            "amount": {"currency_code": currency, "value": to_value(amount, currency)},
            "custom_id": refund_id,
            "invoice_id": refund_id,
        }
        data = await self._call(
            "POST", f"/v2/payments/captures/{capture_id}/refund", json=body, request_id=request_id
        )
        state = refund_state(data)
        if state.capture_id is None:
            # Our own refund of this capture, whatever links PayPal sent.
            state = PayPalRefundState(**{**state.__dict__, "capture_id": capture_id})
        return state

    async def get_refund(self, paypal_refund_id: str) -> PayPalRefundState:
        """A refund as PayPal has it now."""
        return refund_state(await self._call("GET", f"/v2/payments/refunds/{paypal_refund_id}"))

    async def verify_webhook(self, headers: dict[str, str], event: dict[str, Any]) -> bool:
        """Whether PayPal says this delivery is its own, for our webhook id."""
        body = {
            "auth_algo": headers["paypal-auth-algo"],
            "cert_url": headers["paypal-cert-url"],
            "transmission_id": headers["paypal-transmission-id"],
            "transmission_sig": headers["paypal-transmission-sig"],
            "transmission_time": headers["paypal-transmission-time"],
            "webhook_id": self.settings.paypal_webhook_id,
            "webhook_event": event,
        }
        data = await self._call("POST", "/v1/notifications/verify-webhook-signature", json=body)
        return data.get("verification_status") == "SUCCESS"

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """One call, retried on no answer or a 5xx/429 (safe: reads, or keyed by request id)."""
        attempts = self.settings.paypal_max_network_retries + 1
        for attempt in range(attempts):
            try:
                return await self._call_once(method, path, json=json, request_id=request_id)
            except PayPalUnavailable:
                if attempt + 1 == attempts:
                    raise
                await asyncio.sleep(min(0.5 * 2**attempt, 5.0))
        raise AssertionError("unreachable")

    async def _call_once(
        self, method: str, path: str, *, json: dict[str, Any] | None, request_id: str | None
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {await self._access_token()}"}
        if request_id is not None:
            headers["PayPal-Request-Id"] = request_id
            headers["Prefer"] = "return=representation"
        try:
            response = await self.client.request(method, path, json=json, headers=headers)
            if response.status_code == 401:
                # The token was revoked or expired early: one more try with a new one.
                self._token = None
                headers["Authorization"] = f"Bearer {await self._access_token()}"
                response = await self.client.request(method, path, json=json, headers=headers)
        except httpx.HTTPError as exc:
            logger.warning("PayPal %s %s failed: %s", method, path, type(exc).__name__)
            raise PayPalUnavailable(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise PayPalUnavailable(f"PayPal answered {response.status_code}")
        if response.status_code >= 400:
            code, message = _problem(response)
            error = PayPalObjectMissing if response.status_code == 404 else PayPalRefused
            raise error(message, code=code, status=response.status_code)
        try:
            data = response.json()
        except ValueError as exc:
            raise PayPalUnavailable("PayPal answered something that is not JSON") from exc
        if not isinstance(data, dict):
            raise PayPalUnavailable("PayPal answered something that is not a JSON object")
        return data

    async def _access_token(self) -> str:
        """A bearer token from OAuth2 client credentials, cached until shortly before expiry."""
        if not self.settings.paypal_enabled:
            raise PayPalNotConfigured("PAYPAL_CLIENT_ID and PAYPAL_CLIENT_SECRET are not set.")
        async with self._token_lock:
            if self._token is not None and time.monotonic() < self._token_expires:
                return self._token
            try:
                response = await self.client.post(
                    "/v1/oauth2/token",
                    data={"grant_type": "client_credentials"},
                    auth=(self.settings.paypal_client_id, self.settings.paypal_client_secret),
                )
            except httpx.HTTPError as exc:
                raise PayPalUnavailable(f"token: {type(exc).__name__}: {exc}") from exc
            if response.status_code != 200:
                # Wrong credentials are an outage of PayPal top-ups, not the buyer's fault.
                raise PayPalUnavailable(f"PayPal refused our credentials ({response.status_code})")
            token = OAuthToken.from_dictionary(response.json())
            self._token = str(token.access_token)
            lifetime = float(_get(token, "expires_in") or 300)
            self._token_expires = time.monotonic() + max(lifetime - TOKEN_MARGIN_SECONDS, 1.0)
            return self._token

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self.client.aclose()
