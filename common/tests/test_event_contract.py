"""Every routed event has a payload model, and the payloads validate as documented."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from micropay_common.events import EVENT_DATA, EVENT_ROUTES, PaymentSucceeded, TransferCompleted


def test_every_routed_event_has_a_payload_model() -> None:
    assert set(EVENT_DATA) == set(EVENT_ROUTES)


def test_money_in_events_is_positive_integer_minor_units() -> None:
    ok = PaymentSucceeded(payment_id="p", user_id="u", amount=1250, currency="USD")
    assert ok.amount == 1250
    for amount in (0, -5, 12.5, "12.50"):
        with pytest.raises(ValidationError):
            PaymentSucceeded(payment_id="p", user_id="u", amount=amount, currency="USD")
    with pytest.raises(ValidationError):
        PaymentSucceeded(payment_id="p", user_id="u", amount=1, currency="usd")


def test_unknown_fields_are_ignored_so_producers_can_add_fields() -> None:
    data = {
        "transfer_id": "t",
        "from_user_id": "a",
        "from_email": "a@example.com",
        "to_user_id": "b",
        "to_email": "b@example.com",
        "amount": 5,
        "currency": "EUR",
        "added_later": True,
    }
    assert TransferCompleted.model_validate(data).to_email == "b@example.com"
