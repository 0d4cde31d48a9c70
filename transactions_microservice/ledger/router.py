"""HTTP endpoints of the ledger: the caller's history, and the internal invariant check."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from micropay_common.db import ConnectionDep, SessionDep
from micropay_common.instants import Instant
from micropay_common.money import Currency
from micropay_common.pagination import Limit
from micropay_common.security import SERVICE_CALLER_RESPONSES, CurrentUser, require_callers
from micropay_common.services import SERVICES
from transactions_microservice.ledger import service
from transactions_microservice.ledger.schemas import EntryPage, EntryRead, LedgerCheckRead
from transactions_microservice.models import EntryType

MAX_ENTRY_ID = 2**63 - 1
"""Entry ids are bigint: a larger one can name no entry, and is refused before the database."""

router = APIRouter(tags=["transactions"])
internal_router = APIRouter(
    tags=["internal"],
    # A read-only check for operators and for any service's account.
    dependencies=[Depends(require_callers(*SERVICES, admins=True))],
    responses=SERVICE_CALLER_RESPONSES,
)


@router.get(
    "/transactions",
    response_model=EntryPage,
    summary="The caller's ledger entries, newest first",
    responses={
        400: {"description": "`starting_after` is not one of the caller's entries"},
        401: {"description": "No valid access token"},
    },
)
async def list_entries(
    db: ConnectionDep,
    user: CurrentUser,
    limit: Limit = 10,
    starting_after: int | None = Query(
        None, ge=1, le=MAX_ENTRY_ID, description="Id of the last entry of the previous page."
    ),
    entry_type: EntryType | None = Query(
        None, alias="type", description="Only entries of this type."
    ),
    currency: Currency | None = Query(None, description="Only entries of this wallet."),
    created_gte: Instant | None = Query(
        None, description="Only entries created at or after this instant (ISO 8601 with offset)."
    ),
    created_lt: Instant | None = Query(
        None, description="Only entries created before this instant (ISO 8601 with offset)."
    ),
) -> EntryPage:
    """Cursor-paginated history across the caller's wallets, optionally filtered."""
    # One statement in autocommit: no BEGIN or COMMIT around the read.
    found = await service.history(
        db,
        user.id,
        limit=limit,
        starting_after=starting_after,
        entry_type=entry_type,
        currency=currency,
        created_gte=created_gte,
        created_lt=created_lt,
    )
    return EntryPage.of([EntryRead.model_validate(asdict(entry)) for entry in found], limit)


@router.get(
    "/transactions/{line_id:int}",
    response_model=EntryRead,
    summary="One of the caller's ledger entries",
    responses={
        401: {"description": "No valid access token"},
        404: {"description": "No such entry among the caller's"},
    },
)
async def get_entry(
    # The public path names it `line_id`, as it always has.
    entry_id: Annotated[int, Path(alias="line_id", ge=1, le=MAX_ENTRY_ID)],
    db: ConnectionDep,
    user: CurrentUser,
) -> EntryRead:
    """An entry by id; another user's entry is 404, as if it did not exist."""
    return EntryRead.model_validate(asdict(await service.entry(db, user.id, entry_id)))


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
