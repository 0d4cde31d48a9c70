"""The app as deployed: its routes, its settings, and the currency table."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from micropay_common.money import Amount, Currency, minor_units
from transactions_microservice.settings import TransactionsSettings


async def test_serves_the_contracts_endpoints(client):
    spec = (await client.get("/openapi.json")).json()
    assert set(spec["paths"]) >= {
        "/transactions/balance",
        "/transactions/transfers",
        "/transactions",
        "/transactions/{line_id}",
        "/internal/holds",
        "/internal/holds/{hold_id}",
        "/internal/holds/{hold_id}/capture",
        "/internal/holds/{hold_id}/void",
        "/internal/ledger/check",
        "/internal/events",
    }
    transfer = spec["paths"]["/transactions/transfers"]["post"]
    assert "Idempotency-Key" in [p["name"] for p in transfer["parameters"]]


def test_the_default_currency_must_be_supported(tx_settings):
    values = tx_settings.model_dump()
    assert (
        TransactionsSettings.model_validate({**values, "default_currency": "eur"}).default_currency
        == "EUR"
    )
    with pytest.raises(ValidationError, match="default_currency"):
        TransactionsSettings.model_validate({**values, "default_currency": "XYZ"})


def test_hold_lifetimes_must_be_positive(tx_settings):
    with pytest.raises(ValidationError, match="hold_ttl_seconds"):
        TransactionsSettings.model_validate({**tx_settings.model_dump(), "hold_ttl_seconds": 0})


def test_currencies_have_their_minor_units():
    assert TypeAdapter(Currency).validate_python("jpy") == "JPY"
    assert minor_units("JPY") == 0
    assert minor_units("USD") == 2
    with pytest.raises(ValidationError):
        TypeAdapter(Currency).validate_python("CHF")


@pytest.mark.parametrize("json_value", ["0", "-1", "1.0", '"1"', "true", str(10**12 + 1)])
def test_amounts_are_strict_positive_integers(json_value):
    assert TypeAdapter(Amount).validate_json("1") == 1
    with pytest.raises(ValidationError):
        TypeAdapter(Amount).validate_json(json_value)
