"""HTTP endpoints of the ledger: the caller's history, and the internal invariant check."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from pydantic import AwareDatetime

from micropay_common.db import SessionDep
from micropay_common.money import Currency
from micropay_common.pagination import Limit
from micropay_common.security import SERVICE_CALLER_RESPONSES, CurrentUser, require_service
from transactions_microservice.ledger import service
from transactions_microservice.ledger.repository import HistoryFilter
from transactions_microservice.ledger.schemas import LedgerCheckRead, LinePage, LineRead, LineType

MAX_LINE_ID = 2**63 - 1
"""Line ids are bigint: a larger one can name no line, and is refused before the database."""

router = APIRouter(tags=["transactions"])
internal_router = APIRouter(
    tags=["internal"],
    dependencies=[Depends(require_service)],
    responses=SERVICE_CALLER_RESPONSES,
)


@router.get(
    "/transactions",
    response_model=LinePage,
    summary="The caller's ledger lines, newest first",
    responses={
        400: {"description": "`starting_after` is not one of the caller's lines"},
        401: {"description": "No valid access token"},
    },
)
async def list_lines(
    session: SessionDep,
    user: CurrentUser,
    limit: Limit = 10,
    starting_after: int | None = Query(
        None, ge=1, le=MAX_LINE_ID, description="Id of the last line of the previous page."
    ),
    line_type: LineType | None = Query(None, alias="type", description="Only lines of this type."),
    currency: Currency | None = Query(None, description="Only lines of this wallet."),
    created_gte: AwareDatetime | None = Query(
        None, description="Only lines created at or after this instant (ISO 8601 with offset)."
    ),
    created_lt: AwareDatetime | None = Query(
        None, description="Only lines created before this instant (ISO 8601 with offset)."
    ),
) -> LinePage:
    """Cursor-paginated history across the caller's wallets, optionally filtered."""
    lines = await service.history(
        session,
        HistoryFilter(
            user_id=user.id,
            type=line_type,
            currency=currency,
            created_gte=created_gte,
            created_lt=created_lt,
        ),
        limit=limit,
        starting_after=starting_after,
    )
    return LinePage.of([LineRead.model_validate(asdict(line)) for line in lines], limit)


@router.get(
    "/transactions/{line_id:int}",
    response_model=LineRead,
    summary="One of the caller's ledger lines",
    responses={
        401: {"description": "No valid access token"},
        404: {"description": "No such line among the caller's"},
    },
)
async def get_line(
    line_id: Annotated[int, Path(ge=1, le=MAX_LINE_ID)], session: SessionDep, user: CurrentUser
) -> LineRead:
    """A line by id; another user's line is 404, as if it did not exist."""
    return LineRead.model_validate(asdict(await service.line(session, user.id, line_id)))


@internal_router.get(
    "/internal/ledger/check",
    response_model=LedgerCheckRead,
    summary="Check the ledger's invariants",
)
async def check_ledger(session: SessionDep) -> LedgerCheckRead:
    """Entries sum to zero per transaction and currency; balances and holds match; none negative.

    Reads whole tables on one snapshot: for operators and tests, not for every request.
    """
    return LedgerCheckRead.model_validate(asdict(await service.check(session)))
