"""Instants on the wire: RFC 3339 with an offset, held as UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime


def _in_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError as error:
        # 0001-01-01T00:00:00+05:00 is a valid RFC 3339 string but no datetime in UTC.
        raise ValueError("the instant is outside the range of dates") from error


Instant = Annotated[AwareDatetime, AfterValidator(_in_utc)]
"""A query or body instant: its offset is required (422 without), and it is kept in UTC, so
that every instant the service handles can be compared, shifted and stored."""
