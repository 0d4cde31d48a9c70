"""Internal HTTP endpoints of holds (the payment service's account only)."""

from __future__ import annotations

import uuid
from dataclasses import asdict

from fastapi import APIRouter, Depends

from micropay_common.db import ConnectionDep, SessionDep
from micropay_common.security import SERVICE_CALLER_RESPONSES, require_callers
from micropay_common.services import ServiceName
from transactions_microservice.dependencies import SettingsDep
from transactions_microservice.holds import service
from transactions_microservice.holds.schemas import HoldCreate, HoldRead

router = APIRouter(
    tags=["internal"],
    # Holds back refunds, which only the payment service makes.
    dependencies=[Depends(require_callers(ServiceName.PAYMENT))],
    responses=SERVICE_CALLER_RESPONSES,
)


@router.post(
    "/internal/holds",
    status_code=201,
    response_model=HoldRead,
    summary="Reserve money on a user's wallet",
    responses={
        409: {
            "description": "`wallet_has_debt` (the user owes in this currency; with `owed`), "
            "`insufficient_funds`, or `hold_reference_conflict`"
        },
        422: {"description": "Amount not a positive integer, or an unsupported currency"},
    },
)
async def create_hold(body: HoldCreate, db: ConnectionDep, settings: SettingsDep) -> HoldRead:
    """Hold `amount` of the wallet's available balance, never while its user owes in the currency;
    a repeated `reference` returns its hold."""
    hold = await service.create_hold(db, body, settings.hold_ttl_seconds)
    return HoldRead.model_validate(asdict(hold))


@router.get(
    "/internal/holds/{hold_id}",
    response_model=HoldRead,
    summary="A hold",
    responses={404: {"description": "No such hold"}},
)
async def get_hold(hold_id: uuid.UUID, session: SessionDep) -> HoldRead:
    """A hold and its status."""
    return HoldRead.model_validate(asdict(await service.get_hold(session, hold_id)))


@router.post(
    "/internal/holds/{hold_id}/capture",
    response_model=HoldRead,
    summary="Post a hold as a refund line",
    responses={
        404: {"description": "No such hold"},
        409: {"description": "`hold_not_active`: the hold was voided or has expired"},
    },
)
async def capture_hold(hold_id: uuid.UUID, db: ConnectionDep) -> HoldRead:
    """Debit the held amount (wallet → refunds account); capturing again returns the same hold."""
    return HoldRead.model_validate(asdict(await service.capture(db, hold_id)))


@router.post(
    "/internal/holds/{hold_id}/renew",
    response_model=HoldRead,
    summary="Keep a hold for another HOLD_TTL_SECONDS",
    responses={
        404: {"description": "No such hold"},
        409: {"description": "`hold_not_active`: the hold was captured, voided or has expired"},
    },
)
async def renew_hold(hold_id: uuid.UUID, session: SessionDep, settings: SettingsDep) -> HoldRead:
    """Move the expiry of an active hold to HOLD_TTL_SECONDS from now (never earlier)."""
    hold = await service.renew(session, hold_id, settings.hold_ttl_seconds)
    return HoldRead.model_validate(asdict(hold))


@router.post(
    "/internal/holds/{hold_id}/void",
    response_model=HoldRead,
    summary="Release a hold",
    responses={
        404: {"description": "No such hold"},
        409: {"description": "`hold_not_active`: the hold was captured"},
    },
)
async def void_hold(hold_id: uuid.UUID, session: SessionDep) -> HoldRead:
    """Release the held amount (it pays what the user owes first, in the same transaction);
    voiding a voided or expired hold returns it unchanged."""
    return HoldRead.model_validate(asdict(await service.void(session, hold_id)))
