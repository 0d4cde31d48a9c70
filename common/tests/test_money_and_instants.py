"""Amounts as decimals in major units, and instants held in UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import TypeAdapter, ValidationError

from micropay_common.instants import Instant
from micropay_common.money import major_units


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        (123456, "USD", "1234.56"),
        (-1005, "USD", "-10.05"),
        (5, "EUR", "0.05"),
        (-5, "GBP", "-0.05"),
        (0, "USD", "0.00"),
        (1500, "JPY", "1500"),
        (-1500, "JPY", "-1500"),
        (1234, "KWD", "1.234"),
        (10**12, "USD", "10000000000.00"),
    ],
)
def test_major_units_are_exact_decimals(amount: int, currency: str, text: str) -> None:
    assert major_units(amount, currency) == text


INSTANT = TypeAdapter(Instant)


def test_an_instant_is_kept_in_utc() -> None:
    value = INSTANT.validate_python("2026-03-01T09:00:00+09:00")
    assert value == datetime(2026, 3, 1, tzinfo=UTC)
    assert value.utcoffset() == timedelta(0)
    east = datetime(2026, 3, 1, 9, tzinfo=timezone(timedelta(hours=9)))
    assert INSTANT.validate_python(east).tzinfo is UTC


@pytest.mark.parametrize("text", ["2026-03-01T00:00:00", "0001-01-01T00:00:00+05:00", "soon"])
def test_an_instant_without_offset_or_outside_utc_is_refused(text: str) -> None:
    with pytest.raises(ValidationError):
        INSTANT.validate_python(text)
