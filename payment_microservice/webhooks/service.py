"""Stripe webhook events: verified, recorded by event id, applied once.

The event id goes into `stripe_events` in the same transaction as the event's effect, so a
redelivery changes nothing, and an error rolls both back (Stripe retries on the 5xx). Effects
are themselves idempotent (status-guarded settlement, event ids derived from the payment or
refund), so the same fact reported by a webhook and by the confirmation, in any order, counts
once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import stripe
from sqlalchemy.ext.asyncio import AsyncSession

from payment_microservice.models import StripeEventOutcome
from payment_microservice.payments import service as payments_service
from payment_microservice.refunds import service as refunds_service
from payment_microservice.stripe_api import (
    RefundState,
    StripeApi,
    intent_state,
    refund_state,
)
from payment_microservice.webhooks import repository
from payment_microservice.webhooks.exceptions import InvalidPayload, InvalidSignature
from payment_microservice.webhooks.schemas import WebhookOutcome

logger = logging.getLogger("micropay.payment.webhooks")

INTENT_EVENTS = frozenset(
    {
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "payment_intent.requires_action",
        "payment_intent.canceled",
        "payment_intent.processing",
    }
)
REFUND_EVENTS = frozenset({"refund.created", "refund.updated", "charge.refund.updated"})
CHARGE_REFUNDED = "charge.refunded"


def verify(payload: bytes, signature: str | None, secret: str, tolerance: int) -> dict[str, Any]:
    """The event, if the body is signed with our secret within the tolerance; else 400."""
    # The check stripe.Webhook.construct_event makes first; the body is then parsed here,
    # because construct_event fails with an AttributeError on signed JSON that is no object.
    try:
        stripe.WebhookSignature.verify_header(payload, signature, secret, tolerance)
    except stripe.SignatureVerificationError as exc:
        raise InvalidSignature(exc.user_message or "The signature does not verify.") from exc
    except ValueError as exc:  # a body that is not UTF-8
        raise InvalidPayload("The body is not UTF-8 text.") from exc
    try:
        event = json.loads(payload)
    except ValueError as exc:
        raise InvalidPayload("The body is not JSON.") from exc
    data = event.get("data") if isinstance(event, dict) else None
    if (
        not isinstance(event, dict)
        or not isinstance(event.get("id"), str)
        or not isinstance(event.get("type"), str)
        or not isinstance(data, dict)
        or not isinstance(data.get("object"), dict)
    ):
        raise InvalidPayload("The body is not a Stripe event (id, type, data.object).")
    return event


async def prefetch_refunds(stripe_api: StripeApi, event: Mapping[str, Any]) -> list[RefundState]:
    """The refunds a `charge.refunded` event is about, from Stripe when the charge omits them.

    Runs before the event's transaction: no database transaction waits on Stripe.
    """
    if event["type"] != CHARGE_REFUNDED:
        return []
    charge = event["data"]["object"]
    embedded = (charge.get("refunds") or {}).get("data")
    if isinstance(embedded, list):
        return [refund_state(item) for item in embedded]
    return await stripe_api.list_refunds(str(charge["id"]))


async def handle(
    session: AsyncSession, event: dict[str, Any], refunds: list[RefundState]
) -> WebhookOutcome:
    """Record and apply one event: applied, ignored, or a duplicate of one received before."""
    if not await repository.record(session, event):
        logger.info("Stripe event %s already received", event["id"])
        return "duplicate"
    applied = await _apply(session, event, refunds)
    outcome = StripeEventOutcome.APPLIED if applied else StripeEventOutcome.IGNORED
    if not applied:
        await repository.set_outcome(session, event["id"], outcome)
    logger.info(
        "Stripe event %s (%s) %s",
        event["id"],
        event["type"],
        outcome,
        extra={"stripe_event_id": event["id"], "stripe_event_type": event["type"]},
    )
    return outcome


async def _apply(session: AsyncSession, event: dict[str, Any], refunds: list[RefundState]) -> bool:
    kind = event["type"]
    obj = event["data"]["object"]
    if kind in INTENT_EVENTS:
        intent = intent_state(obj)
        payment = await payments_service.payment_of_intent(
            session,
            intent.id,
            intent.payment_id,
            amount=obj.get("amount"),
            currency=str(obj.get("currency", "")).upper(),
        )
        if payment is None:
            return False
        await payments_service.apply_intent(session, payment.id, intent)
        return True
    if kind == CHARGE_REFUNDED:
        payment = await payments_service.payment_of_charge(
            session, obj.get("id"), obj.get("payment_intent")
        )
        if payment is None:
            return False
        changed = False
        for refund in refunds:
            changed |= await refunds_service.record_stripe_refund(session, payment, refund)
        return changed
    if kind in REFUND_EVENTS:
        refund = refund_state(obj)
        payment = await payments_service.payment_of_charge(
            session, refund.charge_id, refund.payment_intent_id
        )
        if payment is None:
            return False
        return await refunds_service.record_stripe_refund(session, payment, refund)
    return False
