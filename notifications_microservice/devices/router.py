"""`/notifications/devices`: the caller's push devices."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status

from micropay_common.db import SessionDep
from micropay_common.pagination import LIST_RESPONSES, Limit, Page
from micropay_common.security import CurrentUser
from notifications_microservice.dependencies import AwsDep, PushPlatformsDep, SettingsDep
from notifications_microservice.devices import service
from notifications_microservice.devices.schemas import DeviceCreate, DeviceRead

router = APIRouter(prefix="/notifications/devices", tags=["notifications"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DeviceRead,
    summary="Register a device for push notifications",
    responses={
        409: {"description": "Too many devices"},
        422: {"description": "Unknown platform, or a token the push service refuses"},
        503: {"description": "The push service is not reachable"},
    },
)
async def register_device(
    body: DeviceCreate,
    user: CurrentUser,
    session: SessionDep,
    aws: AwsDep,
    platforms: PushPlatformsDep,
    settings: SettingsDep,
) -> DeviceRead:
    """Create an SNS platform endpoint for the token; push notifications go there from now on."""
    device = await service.register_device(session, aws.sns, platforms, user.id, body, settings)
    return DeviceRead.model_validate(device)


@router.get("", response_model=Page[DeviceRead], summary="Your devices", responses=LIST_RESPONSES)
async def list_devices(
    user: CurrentUser,
    session: SessionDep,
    limit: Limit = 10,
    starting_after: uuid.UUID | None = None,
) -> Page[DeviceRead]:
    """The caller's devices, newest first."""
    devices = await service.list_devices(session, user.id, limit, starting_after)
    return Page[DeviceRead].of([DeviceRead.model_validate(d) for d in devices], limit)


@router.delete(
    "/{device_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a device",
    responses={404: {"description": "No such device among yours"}},
)
async def remove_device(
    device_id: uuid.UUID, user: CurrentUser, session: SessionDep, aws: AwsDep
) -> Response:
    """Stop pushing to the device and delete its SNS endpoint."""
    await service.remove_device(session, aws.sns, user.id, device_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
