"""HTTP endpoints of wallets: the caller's balances."""

from __future__ import annotations

from fastapi import APIRouter

from micropay_common.db import DirectDep
from micropay_common.security import CurrentUser
from transactions_microservice.accounts import service
from transactions_microservice.accounts.schemas import BalancesRead

router = APIRouter(tags=["transactions"])


@router.get(
    "/transactions/balance",
    response_model=BalancesRead,
    summary="The caller's wallet balances",
    responses={401: {"description": "No valid access token"}},
)
async def get_balance(db: DirectDep, user: CurrentUser) -> BalancesRead:
    """Available (posted minus held), posted and held amounts of each of the caller's wallets."""
    # One statement on the asyncpg pool, in autocommit: no BEGIN or COMMIT around the read.
    return await service.balances(db, user.id)
