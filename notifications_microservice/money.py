"""Amounts in minor units shown as people read them, per the currency's ISO 4217 exponent."""

from __future__ import annotations

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
    """Decimal places of the currency's minor unit (JPY 0, USD 2, KWD 3)."""
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
