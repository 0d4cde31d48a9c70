"""HTTP endpoint of statements: a wallet's period as JSON or CSV, streamed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from micropay_common.instants import Instant
from micropay_common.money import Currency
from micropay_common.security import CurrentUser
from transactions_microservice.dependencies import EngineDep
from transactions_microservice.statements import formats, service
from transactions_microservice.statements.schemas import (
    CSV_EXAMPLE,
    StatementFormat,
    StatementRead,
)

router = APIRouter(tags=["transactions"])


@router.get(
    "/transactions/statement",
    summary="A statement of one of the caller's wallets over a period",
    response_model=StatementRead,
    responses={
        200: {
            "description": "The statement: JSON (`format=json`) or CSV (`format=csv`), streamed.",
            "content": {"text/csv": {"schema": {"type": "string"}, "example": CSV_EXAMPLE}},
        },
        401: {"description": "No valid access token"},
        422: {
            "description": "A missing or unsupported currency, an instant without its offset, "
            "`from` not before `to`, a period over 366 days (`invalid_period`), or `to` in the "
            "future (`instant_in_future`)",
        },
    },
)
async def get_statement(
    engine: EngineDep,
    user: CurrentUser,
    currency: Annotated[Currency, Query(description="The wallet's currency.")],
    start: Annotated[
        Instant,
        Query(
            alias="from",
            description="Start of the period (included), RFC 3339 with its offset.",
            examples=["2026-03-01T00:00:00Z"],
        ),
    ],
    end: Annotated[
        Instant,
        Query(
            alias="to",
            description="End of the period (excluded), RFC 3339 with its offset; not in the "
            "future.",
            examples=["2026-04-01T00:00:00Z"],
        ),
    ],
    format_: StatementFormat = Query(StatementFormat.JSON, alias="format"),
) -> StreamingResponse:
    """Opening balance, every line of the period in posting order, totals and closing balance.

    Read on one snapshot and streamed in batches from a server-side cursor: a year of a busy
    wallet is never held whole, and the opening balance is one index probe, whatever the
    history before `from`.
    """
    service.check_period(start, end)
    parts = service.statement(engine, user.id, currency, start, end)
    if format_ is StatementFormat.CSV:
        name = f"statement-{currency}-{start:%Y%m%d}-{end:%Y%m%d}.csv"
        return StreamingResponse(
            formats.as_csv(parts),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    return StreamingResponse(formats.as_json(parts), media_type="application/json")
