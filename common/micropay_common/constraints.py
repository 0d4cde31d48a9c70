"""CHECK constraints built from enums, so the database and the API accept the same values."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import CheckConstraint

ENUM_INFO_KEY = "enum"
"""Where `check_in` records its enum in the constraint's `info`, for the tests to find."""


def check_in(column: str, values: type[StrEnum], *, name: str) -> CheckConstraint:
    """`CHECK (column IN (...))` listing every value of the enum, in the enum's order."""
    quoted = [value for value in values if "'" in value]
    if quoted:
        raise ValueError(f"{values.__name__} values cannot hold a quote: {quoted}")
    listed = ", ".join(f"'{value}'" for value in values)
    return CheckConstraint(f"{column} IN ({listed})", name=name, info={ENUM_INFO_KEY: values})


def enum_of(constraint: CheckConstraint) -> type[StrEnum] | None:
    """The enum a constraint was built from by `check_in`, or None for any other CHECK."""
    found: type[StrEnum] | None = constraint.info.get(ENUM_INFO_KEY)
    return found
