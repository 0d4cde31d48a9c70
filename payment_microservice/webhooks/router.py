"""`POST /payments/webhooks/stripe` and `/paypal`: the providers' signed events."""

from __future__ import annotations

from fastapi import APIRouter, Request

from micropay_common.db import SessionDep
from payment_microservice.dependencies import (
    PaymentDriverDep,
    PayPalDep,
    SettingsDep,
    StripeDep,
)
from payment_microservice.payments.exceptions import PaymentProviderUnavailable
from payment_microservice.paypal_api import PayPalNotConfigured, PayPalUnavailable
from payment_microservice.stripe_api import StripeUnavailable
from payment_microservice.webhooks import paypal as paypal_events
from payment_microservice.webhooks import service
from payment_microservice.webhooks.exceptions import InvalidSignature
from payment_microservice.webhooks.schemas import WebhookReceipt

router = APIRouter(tags=["webhooks"])


@router.post(
    "/payments/webhooks/stripe",
    response_model=WebhookReceipt,
    summary="Receive a Stripe webhook event",
    responses={
        400: {"description": "Bad or stale signature, or not a Stripe event"},
        503: {"description": "Not applied now; Stripe retries"},
    },
)
async def stripe_webhook(
    request: Request, session: SessionDep, settings: SettingsDep, stripe: StripeDep
) -> WebhookReceipt:
    """Verify the `Stripe-Signature` on the raw body, ask Stripe, then apply the event once.

    A redelivered event answers `duplicate` and changes nothing; event types the service does
    not use answer `ignored`; an error answers 5xx so that Stripe delivers it again.
    """
    payload = await request.body()
    event = service.verify(
        payload,
        request.headers.get("stripe-signature"),
        settings.stripe_webhook_secret,
        settings.stripe_webhook_tolerance_seconds,
    )
    try:
        # Before the event's transaction: the body only names the object; Stripe says what
        # it is now.
        effect = await service.ask_stripe(stripe, event)
    except StripeUnavailable as exc:
        raise PaymentProviderUnavailable("Stripe did not answer; deliver the event again.") from exc
    outcome = await service.handle(session, event, effect)
    return WebhookReceipt(outcome=outcome)


@router.post(
    "/payments/webhooks/paypal",
    response_model=WebhookReceipt,
    summary="Receive a PayPal webhook event",
    responses={
        400: {"description": "Missing, stale or unverified transmission, or not a PayPal event"},
        503: {"description": "Not applied now; PayPal retries"},
    },
)
async def paypal_webhook(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    paypal: PayPalDep,
    driver: PaymentDriverDep,
) -> WebhookReceipt:
    """Verify the delivery with PayPal, read its object from PayPal, then apply the event once.

    A redelivered event answers `duplicate` and changes nothing; event types the service does
    not use answer `ignored`; an error answers 5xx so that PayPal delivers it again.
    """
    payload = await request.body()
    if not (settings.paypal_enabled and settings.paypal_webhook_id):
        raise InvalidSignature("PayPal is not configured here; no delivery can be verified.")
    headers = paypal_events.transmission(request.headers, settings.paypal_webhook_tolerance_seconds)
    event = paypal_events.parse(payload)
    try:
        await paypal_events.verify(paypal, headers, event)
        effect = await paypal_events.ask_paypal(paypal, driver, event)
    except (PayPalUnavailable, PayPalNotConfigured) as exc:
        raise PaymentProviderUnavailable("PayPal did not answer; deliver the event again.") from exc
    outcome = await paypal_events.handle(session, event, effect)
    return WebhookReceipt(outcome=outcome)
