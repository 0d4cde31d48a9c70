"""PayPal webhook events: verified with PayPal, re-read from PayPal, recorded, applied once.

A delivery is accepted only when its transmission time is within
PAYPAL_WEBHOOK_TOLERANCE_SECONDS and PayPal's verify-webhook-signature call, made with our
PAYPAL_WEBHOOK_ID, answers SUCCESS (PayPal then vouches that the body, the transmission id and
time were signed by PayPal for our webhook). Anything else is 400 and changes nothing.

As for Stripe, the body only says which object changed: the order or refund is read from PayPal
before anything is applied, so a replayed or stale body cannot move a payment PayPal itself
does not show moved. `CHECKOUT.ORDER.APPROVED` captures the order (with the payment's capture
request id, so a confirm racing it captures it once); the capture events re-read the order; the
refund events re-read the refund. The event id goes into `paypal_events`, so a redelivery
answers `duplicate`; the effects are the payment's and refund's status-guarded moves, so any
order of deliveries, confirms and reconciliation credits the wallet once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from payment_microservice.models import StripeEventOutcome
from payment_microservice.payments import service as payments_service
from payment_microservice.payments.driver import PaymentDriver
from payment_microservice.paypal_api import (
    TRANSMISSION_HEADERS,
    PayPalApi,
    PayPalRefundState,
    PayPalRefused,
)
from payment_microservice.refunds import service as refunds_service
from payment_microservice.webhooks import repository
from payment_microservice.webhooks.exceptions import InvalidPayload, InvalidSignature
from payment_microservice.webhooks.schemas import WebhookOutcome

logger = logging.getLogger("micropay.payment.webhooks.paypal")

ORDER_APPROVED = "CHECKOUT.ORDER.APPROVED"
CAPTURE_EVENTS = frozenset(
    {
        "PAYMENT.CAPTURE.COMPLETED",
        "PAYMENT.CAPTURE.DENIED",
        "PAYMENT.CAPTURE.PENDING",
        "PAYMENT.CAPTURE.DECLINED",
    }
)
REFUND_EVENTS = frozenset({"PAYMENT.CAPTURE.REFUNDED", "PAYMENT.CAPTURE.REVERSED"})
EVENT_TYPES = frozenset({ORDER_APPROVED, *CAPTURE_EVENTS, *REFUND_EVENTS})
"""The event types our webhook subscribes to and this module acts on."""

Apply = Callable[[AsyncSession], Awaitable[bool]]
"""What is left to apply in the event's transaction: True when it changed anything."""


def parse(payload: bytes) -> dict[str, Any]:
    """The event in the body, or InvalidPayload (400)."""
    try:
        event = json.loads(payload)
    except ValueError as exc:
        raise InvalidPayload("The body is not JSON.") from exc
    if (
        not isinstance(event, dict)
        or not isinstance(event.get("id"), str)
        or not isinstance(event.get("event_type"), str)
        or not isinstance(event.get("resource"), dict)
    ):
        raise InvalidPayload("The body is not a PayPal event (id, event_type, resource).")
    return event


def transmission(headers: Mapping[str, str], tolerance_seconds: int) -> dict[str, str]:
    """PayPal's transmission headers, if all there and recent; else InvalidSignature (400)."""
    found = {name: headers.get(name, "") for name in TRANSMISSION_HEADERS}
    missing = [name for name, value in found.items() if not value]
    if missing:
        raise InvalidSignature(f"PayPal's transmission headers are missing: {', '.join(missing)}.")
    try:
        sent = datetime.fromisoformat(found["paypal-transmission-time"].replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidSignature("PAYPAL-TRANSMISSION-TIME is not a time.") from exc
    if sent.tzinfo is None:
        raise InvalidSignature("PAYPAL-TRANSMISSION-TIME has no time zone.")
    if abs((datetime.now(UTC) - sent).total_seconds()) > tolerance_seconds:
        raise InvalidSignature("The transmission is too old (or from the future).")
    return found


async def verify(paypal: PayPalApi, headers: dict[str, str], event: dict[str, Any]) -> None:
    """PayPal vouches for the delivery, or InvalidSignature (400).

    PayPalUnavailable propagates (the endpoint answers 503 and PayPal delivers again).
    """
    try:
        verified = await paypal.verify_webhook(headers, event)
    except PayPalRefused as exc:
        logger.warning("PayPal refused to verify event %s: %s", event["id"], exc)
        verified = False
    if not verified:
        raise InvalidSignature("PayPal does not vouch for this delivery.")


def _order_of_capture(resource: Mapping[str, Any]) -> str | None:
    related = (resource.get("supplementary_data") or {}).get("related_ids") or {}
    order_id = related.get("order_id") if isinstance(related, Mapping) else None
    return order_id if isinstance(order_id, str) and order_id else None


async def ask_paypal(
    paypal: PayPalApi, driver: PaymentDriver, event: Mapping[str, Any]
) -> Apply | None:
    """Act on what the event's object is at PayPal now; what remains to apply, if anything.

    A payment event is settled here, by the payment driver in its own transaction (a capture
    must not wait inside the event's); a refund event is applied in the event's transaction.
    """
    event_type = event["event_type"]
    resource = event["resource"]
    resource_id = resource.get("id") if isinstance(resource.get("id"), str) else None
    try:
        if event_type == ORDER_APPROVED and resource_id:
            payment = await driver.refresh_order(resource_id, capture=True)
            return _done(payment is not None)
        if event_type in CAPTURE_EVENTS:
            order_id = _order_of_capture(resource)
            if order_id is None:
                return None
            payment = await driver.refresh_order(order_id, capture=False)
            return _done(payment is not None)
        if event_type in REFUND_EVENTS and resource_id:
            refund = await paypal.get_refund(resource_id)
            return _apply_refund(refund)
    except PayPalRefused as exc:
        logger.warning(
            "PayPal event %s (%s): PayPal will not show its object: %s",
            event["id"],
            event_type,
            exc,
        )
    return None


def _done(changed: bool) -> Apply:
    async def apply(session: AsyncSession) -> bool:
        del session
        return changed

    return apply


def _apply_refund(refund: PayPalRefundState) -> Apply:
    async def apply(session: AsyncSession) -> bool:
        if refund.capture_id is None:
            return False
        payment = await payments_service.payment_of_capture(session, refund.capture_id)
        if payment is None:
            return False
        return await refunds_service.record_paypal_refund(session, payment, refund)

    return apply


async def handle(
    session: AsyncSession, event: dict[str, Any], effect: Apply | None
) -> WebhookOutcome:
    """Record and apply one event: applied, ignored, or a duplicate of one received before."""
    if not await repository.record_paypal(session, event):
        logger.info("PayPal event %s already received", event["id"])
        return "duplicate"
    applied = await effect(session) if effect is not None else False
    outcome = StripeEventOutcome.APPLIED if applied else StripeEventOutcome.IGNORED
    if not applied:
        await repository.set_paypal_outcome(session, event["id"], outcome)
    logger.info(
        "PayPal event %s (%s) %s",
        event["id"],
        event["event_type"],
        outcome,
        extra={"paypal_event_id": event["id"], "paypal_event_type": event["event_type"]},
    )
    return outcome
