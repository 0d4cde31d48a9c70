"""HTTP endpoints of wallets: the caller's balances, now or at an instant."""

from __future__ import annotations

from fastapi import APIRouter, Query

from micropay_common.db import DirectDep
from micropay_common.instants import Instant
from micropay_common.security import CurrentUser
from transactions_microservice.accounts import service
from transactions_microservice.accounts.schemas import BalancesRead

router = APIRouter(tags=["transactions"])


@router.get(
    "/transactions/balance",
    response_model=BalancesRead,
    summary="The caller's wallet balances, now or at an instant",
    responses={
        401: {"description": "No valid access token"},
        422: {
            "description": "`at` is not an RFC 3339 instant with its offset, or is in the future",
        },
    },
)
async def get_balance(
    db: DirectDep,
    user: CurrentUser,
    at: Instant | None = Query(
        None,
        description=(
            "An RFC 3339 instant with its offset: the balances as the ledger left them just "
            "before it, computed from the entries (every wallet the caller has now; zero "
            "before its first entry). `held`, `pending` and `owed` are what they were then: "
            "holds placed and not yet resolved or overdue, card money not yet settled, and "
            "what the debt account's entries left owing."
        ),
        examples=["2026-01-31T23:59:59Z"],
    ),
) -> BalancesRead:
    """Available (posted minus held), posted and held amounts of each of the caller's wallets."""
    # One statement on the asyncpg pool, in autocommit: no BEGIN or COMMIT around the read.
    return await service.balances(db, user.id, at)
