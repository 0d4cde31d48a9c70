"""Templates, amounts in minor units, settings, and the SNS platform applications."""

from __future__ import annotations

from typing import Any, get_args

import pytest
from jinja2 import UndefinedError
from pydantic import ValidationError

from micropay_common.events import events_consumed_by
from micropay_common.money import format_amount, minor_unit_exponent
from micropay_common.services import ServiceName
from notifications_microservice.devices.platforms import PushPlatforms
from notifications_microservice.models import DevicePlatform
from notifications_microservice.rendering import KINDS, render_message
from notifications_microservice.settings import SVIX_RETRY_SCHEDULE, NotificationsSettings
from notifications_microservice.state import NotificationsState
from notifications_microservice.webhooks.schemas import ALL_WEBHOOK_EVENTS, WebhookEvent
from notifications_microservice.webhooks.service import new_secret


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        (1234, "USD", "12.34 USD"),
        (5, "USD", "0.05 USD"),
        (123456789, "EUR", "1,234,567.89 EUR"),
        (1500, "JPY", "1,500 JPY"),
        (1, "KRW", "1 KRW"),
        (1234, "KWD", "1.234 KWD"),
        (10000, "CLF", "1.0000 CLF"),
        (-250, "usd", "-2.50 USD"),
    ],
)
def test_amounts_follow_the_currencys_minor_unit(amount, currency, shown):
    assert format_amount(amount, currency) == shown


def test_exponents():
    assert (minor_unit_exponent("JPY"), minor_unit_exponent("USD")) == (0, 2)
    assert minor_unit_exponent("BHD") == 3


CONTEXTS: dict[str, dict[str, Any]] = {
    "welcome": {"email": "a@example.com"},
    "payment_succeeded": {"amount": "1.00 USD", "payment_id": "pay_1"},
    "payment_failed": {"amount": "1.00 USD", "payment_id": "pay_1", "reason": None},
    "payment_refunded": {"amount": "1.00 USD", "payment_id": "pay_1", "refund_id": "re_1"},
    "payment_refund_failed": {
        "amount": "1.00 USD",
        "payment_id": "pay_1",
        "refund_id": "re_1",
        "reason": None,
    },
    "money_request_sent": {
        "amount": "12.50 USD",
        "counterparty_email": "b@example.com",
        "note": "Tickets",
        "request_id": "rq_1",
        "transfer_id": None,
        "as_payer": False,
    },
    "money_request_received": {
        "amount": "12.50 USD",
        "counterparty_email": "b@example.com",
        "note": "Tickets",
        "request_id": "rq_1",
        "transfer_id": None,
        "as_payer": False,
    },
    "money_request_paid": {
        "amount": "12.50 USD",
        "counterparty_email": "b@example.com",
        "note": "Tickets",
        "request_id": "rq_1",
        "transfer_id": "tr_1",
        "as_payer": True,
    },
    "money_request_declined": {
        "amount": "12.50 USD",
        "counterparty_email": "b@example.com",
        "note": "Tickets",
        "request_id": "rq_1",
        "transfer_id": None,
        "as_payer": True,
    },
    "money_request_canceled": {
        "amount": "12.50 USD",
        "counterparty_email": "b@example.com",
        "note": "Tickets",
        "request_id": "rq_1",
        "transfer_id": None,
        "as_payer": False,
    },
    "money_request_expired": {
        "amount": "12.50 USD",
        "counterparty_email": "b@example.com",
        "note": "Tickets",
        "request_id": "rq_1",
        "transfer_id": None,
        "as_payer": False,
    },
    "transfer_invitation_sent": {
        "amount": "20.00 USD",
        "counterparty_email": "b@example.com",
        "description": "Gift",
        "transfer_id": "tr_1",
        "expires_at": "2026-12-12 10:00 UTC",
    },
    "transfer_invitation": {
        "amount": "20.00 USD",
        "counterparty_email": "b@example.com",
        "description": "Gift",
        "expires_at": "2026-12-12 10:00 UTC",
    },
    "transfer_invitation_canceled": {
        "amount": "20.00 USD",
        "counterparty_email": "b@example.com",
        "description": "Gift",
        "transfer_id": "tr_1",
        "expires_at": "2026-12-12 10:00 UTC",
    },
    "transfer_invitation_expired": {
        "amount": "20.00 USD",
        "counterparty_email": "b@example.com",
        "description": "Gift",
        "transfer_id": "tr_1",
        "expires_at": "2026-12-12 10:00 UTC",
    },
    "transfer_sent": {
        "amount": "1.00 USD",
        "counterparty_email": "b@example.com",
        "description": None,
        "transfer_id": "tr_1",
    },
    "payment_dispute_opened": {
        "amount": "10.00 USD",
        "payment_id": "pay_1",
        "dispute_id": "dp_1",
        "reason": "fraudulent",
    },
    "payment_dispute_funds_withdrawn": {
        "amount": "10.00 USD",
        "payment_id": "pay_1",
        "dispute_id": "dp_1",
    },
    "payment_dispute_funds_reinstated": {
        "amount": "10.00 USD",
        "payment_id": "pay_1",
        "dispute_id": "dp_1",
    },
    "payment_dispute_closed": {
        "amount": "10.00 USD",
        "payment_id": "pay_1",
        "dispute_id": "dp_1",
        "status": "lost",
    },
    "transfer_received": {
        "amount": "1.00 USD",
        "counterparty_email": "b@example.com",
        "description": "lunch",
        "transfer_id": "tr_1",
    },
}


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_renders_all_four_texts(kind):
    message = render_message(kind, {**CONTEXTS[kind], "event_id": "evt_1"})
    assert message.subject
    assert "\n" not in message.subject
    assert message.push
    assert "Reference: evt_1" in message.text
    assert message.html.startswith("<!DOCTYPE html>")
    assert f"<title>{message.subject}</title>" in message.html


def test_html_is_escaped_and_text_is_not():
    context = {**CONTEXTS["transfer_received"], "event_id": "e", "description": "<img src=x>"}
    message = render_message("transfer_received", context)
    assert "Note: <img src=x>" in message.text
    assert "Note: &lt;img src=x&gt;" in message.html
    assert "<img" not in message.html


def test_a_missing_variable_is_an_error_not_a_blank():
    with pytest.raises(UndefinedError):
        render_message("payment_succeeded", {"event_id": "e", "amount": "1.00 USD"})


def test_webhook_events_are_exactly_those_the_service_consumes():
    assert set(get_args(WebhookEvent)) == events_consumed_by(ServiceName.NOTIFICATIONS)
    assert set(ALL_WEBHOOK_EVENTS) == events_consumed_by(ServiceName.NOTIFICATIONS)


def test_secrets_are_standard_webhooks_secrets():
    from standardwebhooks import Webhook

    secret = new_secret()
    assert secret.startswith("whsec_")
    assert secret != new_secret()
    Webhook(secret)  # parses: whsec_ and 24 bytes of base64


def test_retry_schedules_read_from_comma_separated_seconds(notifications_settings, monkeypatch):
    for name, value in notifications_settings().model_dump().items():
        if value is not None and not isinstance(value, tuple | frozenset):
            monkeypatch.setenv(name.upper(), str(value))
    monkeypatch.setenv("WEBHOOK_RETRY_SCHEDULE", "1, 2.5,60")
    monkeypatch.setenv("DELIVERY_RETRY_SCHEDULE", "0")
    settings = NotificationsSettings(_env_file=None)
    assert settings.webhook_retry_schedule == (1.0, 2.5, 60.0)
    assert settings.delivery_retry_schedule == (0.0,)
    monkeypatch.delenv("WEBHOOK_RETRY_SCHEDULE")
    assert NotificationsSettings(_env_file=None).webhook_retry_schedule == SVIX_RETRY_SCHEDULE
    assert SVIX_RETRY_SCHEDULE == (5, 300, 1800, 7200, 18000, 36000)


def test_the_lease_must_outlast_a_send(notifications_settings):
    with pytest.raises(ValidationError, match="DELIVERY_LEASE_SECONDS must be at least 30"):
        notifications_settings(webhook_timeout_seconds=15.0, delivery_lease_seconds=20.0)
    with pytest.raises(ValidationError, match="retry delays must be zero or more"):
        notifications_settings(webhook_retry_schedule="5,-1")


async def test_platform_applications_are_found_or_created_once(app, moto_endpoint):
    from notifications_microservice.tests.helpers import moto_data

    first = await PushPlatforms(
        NotificationsState.of(app).aws.sns, NotificationsState.of(app).settings
    ).application_arn(DevicePlatform.APNS_SANDBOX)
    second = await PushPlatforms(
        NotificationsState.of(app).aws.sns, NotificationsState.of(app).settings
    ).application_arn(DevicePlatform.APNS_SANDBOX)
    assert first == second
    assert first.endswith(":app/APNS_SANDBOX/micropay-apns_sandbox")
    named = [
        a
        for a in moto_data(moto_endpoint)["sns"]["PlatformApplication"]
        if a["name"] == "micropay-apns_sandbox"
    ]
    assert len(named) == 1
    configured = NotificationsState.of(app).settings.model_copy(
        update={"sns_fcm_application_arn": "arn:aws:sns:us-east-1:1:app/GCM/theirs"}
    )
    assert await PushPlatforms(NotificationsState.of(app).aws.sns, configured).application_arn(
        DevicePlatform.FCM
    ) == ("arn:aws:sns:us-east-1:1:app/GCM/theirs")
