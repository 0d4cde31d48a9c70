"""Stripe webhook events: verified, checked with Stripe, recorded by event id, applied once.

A signed event says only which object changed: before anything is applied, the object is
retrieved from Stripe (the PaymentIntent, the Refund, a charge's refunds, the Dispute) and its
status as Stripe has it now is what counts, so a forged or stale body cannot credit a wallet,
take money from one, or move a payment from `failed` to `succeeded` unless Stripe itself says
so. That read happens
before the event's transaction, so no database transaction waits on Stripe.

The event id goes into `stripe_events` in the same transaction as the event's effect, so a
redelivery changes nothing, and an error rolls both back (Stripe retries on the 5xx). Effects
are themselves idempotent (status-guarded moves, event ids derived from the payment or
refund), so the same fact reported by a webhook, the request and the reconciler, in any
order, counts once.

Each event type this service acts on has one entry in FETCHERS: a function that asks Stripe
about the event's object and returns what to apply in the transaction (or None: nothing of
ours). A new event type is a new entry.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import stripe
from sqlalchemy.ext.asyncio import AsyncSession

from payment_microservice.disputes import service as disputes_service
from payment_microservice.models import StripeEventOutcome
from payment_microservice.payments import service as payments_service
from payment_microservice.refunds import service as refunds_service
from payment_microservice.stripe_api import (
    DisputeState,
    IntentState,
    RefundState,
    StripeApi,
    StripeRefused,
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
REFUND_EVENTS = frozenset(
    {"refund.created", "refund.updated", "refund.failed", "charge.refund.updated"}
)
CHARGE_REFUNDED = "charge.refunded"
DISPUTE_EVENTS = frozenset(
    {
        "charge.dispute.created",
        "charge.dispute.updated",
        "charge.dispute.closed",
        "charge.dispute.funds_withdrawn",
        "charge.dispute.funds_reinstated",
    }
)

Apply = Callable[[AsyncSession], Awaitable[bool]]
"""An event's effect, bound to what Stripe said: True when it changed anything."""
Fetch = Callable[[StripeApi, Mapping[str, Any]], Awaitable[Apply | None]]
"""Asks Stripe about an event's object (`data.object`); None when there is nothing to apply."""


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


async def ask_stripe(stripe_api: StripeApi, event: Mapping[str, Any]) -> Apply | None:
    """What the event's object is at Stripe now, as the effect to apply; None to ignore it.

    StripeUnavailable propagates (the endpoint answers 503 and Stripe delivers again).
    """
    fetch = FETCHERS.get(event["type"])
    if fetch is None:
        return None
    try:
        return await fetch(stripe_api, event["data"]["object"])
    except StripeRefused as exc:
        # Most often StripeObjectMissing: a forged id, or another account's.
        logger.warning(
            "Stripe event %s (%s): Stripe will not show its object: %s",
            event["id"],
            event["type"],
            exc,
        )
        return None


async def handle(
    session: AsyncSession, event: dict[str, Any], effect: Apply | None
) -> WebhookOutcome:
    """Record and apply one event: applied, ignored, or a duplicate of one received before."""
    if not await repository.record(session, event):
        logger.info("Stripe event %s already received", event["id"])
        return "duplicate"
    applied = await effect(session) if effect is not None else False
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


def _object_id(obj: Mapping[str, Any]) -> str | None:
    value = obj.get("id")
    return value if isinstance(value, str) and value else None


async def _fetch_intent(stripe_api: StripeApi, obj: Mapping[str, Any]) -> Apply | None:
    intent_id = _object_id(obj)
    if intent_id is None:
        return None
    intent = await stripe_api.retrieve_intent(intent_id)

    async def apply(session: AsyncSession) -> bool:
        return await _apply_intent(session, intent)

    return apply


async def _apply_intent(session: AsyncSession, intent: IntentState) -> bool:
    payment = await payments_service.payment_of_intent(
        session, intent.id, intent.payment_id, amount=intent.amount, currency=intent.currency or ""
    )
    if payment is None:
        return False
    await payments_service.apply_intent(session, payment.id, intent)
    return True


async def _fetch_refund(stripe_api: StripeApi, obj: Mapping[str, Any]) -> Apply | None:
    refund_id = _object_id(obj)
    if refund_id is None:
        return None
    refund = await stripe_api.retrieve_refund(refund_id)

    async def apply(session: AsyncSession) -> bool:
        return await _apply_refunds(session, [refund])

    return apply


async def _fetch_charge_refunds(stripe_api: StripeApi, obj: Mapping[str, Any]) -> Apply | None:
    charge_id = _object_id(obj)
    if charge_id is None:
        return None
    # The refunds as Stripe lists them now, never the copies embedded in the event.
    refunds = await stripe_api.list_refunds(charge_id)

    async def apply(session: AsyncSession) -> bool:
        return await _apply_refunds(session, refunds)

    return apply


async def _apply_refunds(session: AsyncSession, refunds: list[RefundState]) -> bool:
    changed = False
    for refund in refunds:
        payment = await payments_service.payment_of_charge(
            session, refund.charge_id, refund.payment_intent_id
        )
        if payment is not None:
            changed |= await refunds_service.record_stripe_refund(session, payment, refund)
    return changed


async def _fetch_dispute(stripe_api: StripeApi, obj: Mapping[str, Any]) -> Apply | None:
    dispute_id = _object_id(obj)
    if dispute_id is None:
        return None
    # Whichever of the five events this is, the Dispute as Stripe has it now (its status and
    # balance transactions) says which steps have happened; the event's type does not.
    dispute = await stripe_api.retrieve_dispute(dispute_id)

    async def apply(session: AsyncSession) -> bool:
        return await _apply_dispute(session, dispute)

    return apply


async def _apply_dispute(session: AsyncSession, dispute: DisputeState) -> bool:
    payment = await payments_service.payment_of_charge(
        session, dispute.charge_id, dispute.payment_intent_id
    )
    if payment is None:
        return False
    return await disputes_service.record_stripe_dispute(session, payment, dispute)


FETCHERS: Mapping[str, Fetch] = {
    **dict.fromkeys(INTENT_EVENTS, _fetch_intent),
    **dict.fromkeys(REFUND_EVENTS, _fetch_refund),
    CHARGE_REFUNDED: _fetch_charge_refunds,
    **dict.fromkeys(DISPUTE_EVENTS, _fetch_dispute),
}
"""The event types this service acts on, each with how Stripe is asked about its object."""
