"""HTTP endpoint of the limits: what the caller may still send."""

from __future__ import annotations

from fastapi import APIRouter

from micropay_common.db import SessionDep
from micropay_common.security import CurrentUser
from transactions_microservice.dependencies import SettingsDep
from transactions_microservice.limits import service
from transactions_microservice.limits.schemas import LimitsRead

router = APIRouter(tags=["transactions"])


@router.get(
    "/transactions/limits",
    response_model=LimitsRead,
    summary="The caller's transfer allowances left today",
    responses={401: {"description": "No valid access token"}},
)
async def get_limits(session: SessionDep, settings: SettingsDep, user: CurrentUser) -> LimitsRead:
    """Per currency: the largest transfer, the daily limit, what was sent today and what is left."""
    return await service.limits(session, settings, user.id)
