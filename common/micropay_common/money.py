"""Money on the wire: amounts in minor units, the currencies wallets hold, and display."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field, StrictInt

# Amounts are integers of the minor unit: 1050 USD is $10.50, 1050 JPY is ¥1050.
SUPPORTED_CURRENCIES: Mapping[str, int] = MappingProxyType(
    {
        "USD": 2,
        "EUR": 2,
        "GBP": 2,
        "JPY": 0,
    }
)


MAX_AMOUNT = 1_000_000_000_000
"""Largest amount one request may move, in minor units; keeps sums far from bigint's limit."""

Amount = Annotated[
    StrictInt,
    Field(
        gt=0,
        le=MAX_AMOUNT,
        description="A positive whole number of minor units (cents for USD, yen for JPY).",
        examples=[1050],
    ),
]
"""An amount in a request body: 10.5, 10.0, "10" and true are refused, not coerced."""


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


def _supported(code: str) -> str:
    if code not in SUPPORTED_CURRENCIES:
        raise ValueError(
            f"unsupported currency {code!r}; supported: {', '.join(sorted(SUPPORTED_CURRENCIES))}"
        )
    return code


Currency = Annotated[
    str,
    BeforeValidator(_upper),
    Field(
        pattern=r"^[A-Z]{3}$",
        description="ISO 4217 code of a supported currency (USD, EUR, GBP, JPY).",
        examples=["USD"],
    ),
    AfterValidator(_supported),
]
"""A supported currency code in a request body; any case is accepted, upper case is kept."""

CurrencyCode = Annotated[
    str,
    Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, upper case.", examples=["USD"]),
]
"""A currency code another service reports (events), supported by the wallets or not: money
that moved in another currency must still be recorded, so only the shape is checked."""


def minor_units(code: str) -> int:
    """Decimal places of the currency's minor unit (2 for USD, 0 for JPY)."""
    return SUPPORTED_CURRENCIES[code]


# Currencies whose minor unit is not a hundredth (ISO 4217); every other currency has 2 decimals.
_EXPONENTS = {
    **dict.fromkeys(
        (
            "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI",
            "VND", "VUV", "XAF", "XOF", "XPF",
        ),
        0,
    ),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
}  # fmt: skip


def minor_unit_exponent(currency: str) -> int:
    """Decimal places of any currency's minor unit (JPY 0, USD 2, KWD 3)."""
    return _EXPONENTS.get(currency.upper(), 2)


def format_amount(amount: int, currency: str) -> str:
    """`1234, "USD"` → `"12.34 USD"`; `1500, "JPY"` → `"1,500 JPY"`; integers only, no floats."""
    exponent = minor_unit_exponent(currency)
    sign = "-" if amount < 0 else ""
    whole, fraction = divmod(abs(amount), 10**exponent)
    text = f"{whole:,}"
    if exponent:
        text += f".{fraction:0{exponent}d}"
    return f"{sign}{text} {currency.upper()}"


def major_units(amount: int, currency: str) -> str:
    """`-1234, "USD"` → `"-12.34"`; `1500, "JPY"` → `"1500"`: a plain decimal a spreadsheet or
    a provider reads, without separators or code; integers only, no floats."""
    exponent = minor_unit_exponent(currency)
    sign = "-" if amount < 0 else ""
    whole, fraction = divmod(abs(amount), 10**exponent)
    return f"{sign}{whole}.{fraction:0{exponent}d}" if exponent else f"{sign}{whole}"


def parse_amounts_by_currency(spec: str) -> dict[str, int]:
    """`CODE:AMOUNT` entries, comma-separated (`USD:500000,JPY:50000`), as a map of positive
    amounts in minor units; ValueError when malformed. An empty spec is an empty map."""
    amounts: dict[str, int] = {}
    for entry in filter(None, (part.strip() for part in spec.split(","))):
        code, _, amount = entry.partition(":")
        code = code.strip().upper()
        if len(code) != 3 or not code.isalpha():
            raise ValueError(f"{entry!r}: expected CODE:AMOUNT with an ISO 4217 code")
        try:
            value = int(amount)
        except ValueError as exc:
            raise ValueError(f"{entry!r}: expected CODE:AMOUNT in minor units") from exc
        if not 0 < value <= MAX_AMOUNT:
            raise ValueError(f"{entry!r}: the amount must be between 1 and {MAX_AMOUNT}")
        amounts[code] = value
    return amounts


def format_amounts_by_currency(amounts: Mapping[str, int]) -> str:
    """The inverse of parse_amounts_by_currency, in a stable order."""
    return ",".join(f"{code}:{amount}" for code, amount in sorted(amounts.items()))


def utc_day_bounds(now: datetime) -> tuple[datetime, datetime]:
    """The UTC day `now` falls in: its start, and the next day's start (when daily limits reset)."""
    start = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=1)
