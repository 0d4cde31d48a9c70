"""HTTP endpoint of the limits: what the caller may still send and top up."""

from __future__ import annotations

from fastapi import APIRouter

from micropay_common.db import SessionDep
from micropay_common.security import CurrentUser
from transactions_microservice.dependencies import SettingsDep, TopUpAllowanceClientDep
from transactions_microservice.limits import service
from transactions_microservice.limits.schemas import LimitsRead

router = APIRouter(tags=["transactions"])


@router.get(
    "/transactions/limits",
    response_model=LimitsRead,
    summary="The caller's transfer and top-up allowances left today",
    responses={401: {"description": "No valid access token"}},
)
async def get_limits(
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
    top_ups: TopUpAllowanceClientDep,
) -> LimitsRead:
    """Per currency: the largest transfer, the daily transfer limit, what was sent today and
    what is left; and the payment service's top-up allowances (`top_ups`, null when it cannot
    be asked: the transfer part still answers)."""
    return await service.limits(session, settings, user.id, top_ups)
