"""A statement as bytes: JSON written piece by piece, or CSV; both streamed."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from micropay_common.money import major_units
from transactions_microservice.statements.schemas import CSV_COLUMNS, StatementLineRead


@dataclass(frozen=True)
class Opening:
    """What a statement starts with."""

    currency: str
    start: datetime
    end: datetime
    balance: int


@dataclass(frozen=True)
class Closing:
    """What a statement ends with."""

    total_in: int
    total_out: int
    balance: int


StatementPart = Opening | list[StatementLineRead] | Closing
"""The opening, then batches of lines, then the closing."""


def _instant(value: datetime) -> str:
    # As pydantic writes datetimes on every other endpoint: RFC 3339, UTC as `Z`.
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def as_json(parts: AsyncIterator[StatementPart]) -> AsyncIterator[bytes]:
    """The StatementRead document, one chunk per batch of lines."""
    first = True
    async for part in parts:
        if isinstance(part, Opening):
            head = {
                "currency": part.currency,
                "from": _instant(part.start),
                "to": _instant(part.end),
                "opening_balance": part.balance,
            }
            yield orjson.dumps(head)[:-1] + b',"lines":['
        elif isinstance(part, Closing):
            tail = {
                "total_in": part.total_in,
                "total_out": part.total_out,
                "closing_balance": part.balance,
            }
            yield b"]," + orjson.dumps(tail)[1:]
        elif part:
            chunk = b",".join(line.model_dump_json().encode() for line in part)
            yield chunk if first else b"," + chunk
            first = False


async def as_csv(parts: AsyncIterator[StatementPart]) -> AsyncIterator[bytes]:
    """The CSV: a header row, the opening balance, the lines, the totals, the closing balance."""
    currency = ""
    end = ""
    async for part in parts:
        if isinstance(part, Opening):
            currency, end = part.currency, _instant(part.end)
            opening = (_instant(part.start), "opening_balance", "Opening balance")
            yield _rows(
                [CSV_COLUMNS, (*opening, "", "", major_units(part.balance, currency), currency, "")]
            )
        elif isinstance(part, Closing):
            total_in = major_units(part.total_in, currency)
            total_out = major_units(-part.total_out, currency)
            closing = major_units(part.balance, currency)
            yield _rows(
                [
                    (end, "total_in", "Total in", "", total_in, "", currency, ""),
                    (end, "total_out", "Total out", "", total_out, "", currency, ""),
                    (end, "closing_balance", "Closing balance", "", "", closing, currency, ""),
                ]
            )
        else:
            yield _rows(
                (
                    _instant(line.created_at),
                    line.type,
                    _text(line.description),
                    _text(line.counterparty_email),
                    major_units(line.amount, currency),
                    major_units(line.balance_after, currency),
                    currency,
                    line.reference,
                )
                for line in part
            )


# A cell a spreadsheet would read as a formula (a description is the sender's own text).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _text(value: str | None) -> str:
    if not value:
        return ""
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def _rows(rows: Iterable[Iterable[object]]) -> bytes:
    buffer = io.StringIO()
    # Excel's dialect: comma-separated, CRLF, quoted where needed (RFC 4180).
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue().encode()
