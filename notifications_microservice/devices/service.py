"""Rules of devices: an SNS platform endpoint per push token, removed with the device."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Collection, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from sqlalchemy.ext.asyncio import AsyncSession

from micropay_common.locks import lock_for_transaction
from micropay_common.pagination import InvalidCursor
from notifications_microservice.aws import describe, error_code
from notifications_microservice.devices import repository
from notifications_microservice.devices.exceptions import (
    DeviceNotFound,
    InvalidDeviceToken,
    PushUnavailable,
    TooManyDevices,
)
from notifications_microservice.devices.platforms import PushPlatforms
from notifications_microservice.devices.schemas import DeviceCreate
from notifications_microservice.models import Device
from notifications_microservice.settings import NotificationsSettings

# SNS refuses to create an endpoint for a token that has one with other attributes (such as
# Enabled=false) and names the existing endpoint in the message.
_EXISTING_ENDPOINT = re.compile(r"Endpoint (arn:\S+) already exists")


def _endpoint_for(sns: Any, application_arn: str, token: str) -> str:
    """Create (or find) the token's endpoint and make sure it is enabled (AWS's recipe)."""
    try:
        created = sns.create_platform_endpoint(PlatformApplicationArn=application_arn, Token=token)
        arn = str(created["EndpointArn"])
    except ClientError as exc:
        found = _EXISTING_ENDPOINT.search(str(exc.response.get("Error", {}).get("Message", "")))
        if error_code(exc) != "InvalidParameter" or found is None:
            raise
        arn = found.group(1)
    attributes = sns.get_endpoint_attributes(EndpointArn=arn).get("Attributes", {})
    # A token registered again is the app telling us it works again (AWS's advice for
    # endpoints that were disabled after a delivery failure).
    if str(attributes.get("Enabled", "true")).lower() != "true":
        sns.set_endpoint_attributes(EndpointArn=arn, Attributes={"Enabled": "true"})
    return arn


async def register_device(
    session: AsyncSession,
    sns: Any,
    platforms: PushPlatforms,
    user_id: str,
    request: DeviceCreate,
    settings: NotificationsSettings,
) -> Device:
    """Create the device's SNS endpoint and record it for the user (up to the cap)."""
    limit = settings.devices_per_user_max
    # Two registrations at once would both count the devices before either adds one: the
    # user's lock, held until the transaction ends, makes them count one after the other.
    await lock_for_transaction(session, f"notifications.devices:{user_id}")
    # A token the user has already is registered again, not added, so it never hits the cap.
    if await repository.count_devices(session, user_id) >= limit and not await repository.has_token(
        session, user_id, request.platform, request.token
    ):
        raise TooManyDevices(f"You have {limit} devices already; remove one first.")
    try:
        application_arn = await platforms.application_arn(request.platform)
        endpoint_arn = await asyncio.to_thread(_endpoint_for, sns, application_arn, request.token)
    except ClientError as exc:
        if error_code(exc) in ("InvalidParameter", "InvalidParameterValue"):
            raise InvalidDeviceToken(
                f"The push service refused the token: {describe(exc)}"
            ) from exc
        raise PushUnavailable(f"The push service failed: {describe(exc)}") from exc
    except BotoCoreError as exc:
        raise PushUnavailable(f"The push service is not reachable: {describe(exc)}") from exc
    return await repository.upsert_device(
        session,
        user_id=user_id,
        platform=request.platform,
        token=request.token,
        endpoint_arn=endpoint_arn,
    )


async def list_devices(
    session: AsyncSession, user_id: str, limit: int, starting_after: uuid.UUID | None
) -> Sequence[Device]:
    """A page (plus one) of the user's devices, newest first."""
    after = None
    if starting_after is not None:
        after = await repository.get_device(session, user_id, starting_after)
        if after is None:
            raise InvalidCursor(f"starting_after: you have no device {starting_after}.")
    return await repository.list_devices(session, user_id, limit + 1, after)


async def remove_device(
    session: AsyncSession, sns: Any, user_id: str, device_id: uuid.UUID
) -> None:
    """Forget the device and delete its SNS endpoint (both or, on an SNS failure, neither)."""
    device = await repository.get_device(session, user_id, device_id)
    if device is None:
        raise DeviceNotFound(f"You have no device {device_id}.")
    await repository.delete_device(session, device.id)
    await session.flush()
    try:
        # Deleting an endpoint that is gone already succeeds: the call is idempotent.
        await asyncio.to_thread(sns.delete_endpoint, EndpointArn=device.endpoint_arn)
    except (ClientError, BotoCoreError) as exc:
        raise PushUnavailable(f"The push service failed: {describe(exc)}") from exc


async def push_endpoints(session: AsyncSession, user_id: str) -> Sequence[tuple[str, str]]:
    """(platform, endpoint ARN) of the user's enabled devices: where their pushes go."""
    return await repository.enabled_endpoints(session, user_id)


async def push_endpoints_of(
    session: AsyncSession, user_ids: Collection[str]
) -> dict[str, list[tuple[str, str]]]:
    """push_endpoints of several users at once: one query for a batch of pushes."""
    return await repository.enabled_endpoints_of(session, user_ids)


async def disable_endpoint(session: AsyncSession, endpoint_arn: str, reason: str) -> None:
    """Stop pushing to the device whose endpoint the push service reported disabled."""
    await repository.disable_endpoint(session, endpoint_arn, reason)
