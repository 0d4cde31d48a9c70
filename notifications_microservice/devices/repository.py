"""SQL of the devices domain."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence

from sqlalchemy import delete, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from notifications_microservice.models import Device, DevicePlatform


async def upsert_device(
    session: AsyncSession, *, user_id: str, platform: DevicePlatform, token: str, endpoint_arn: str
) -> Device:
    """Register a token for the user; a token registered before (by anyone) moves to them."""
    statement = insert(Device).values(
        id=uuid.uuid4(), user_id=user_id, platform=platform, token=token, endpoint_arn=endpoint_arn
    )
    upsert = statement.on_conflict_do_update(
        constraint="devices_platform_token_key",
        set_={
            "user_id": statement.excluded.user_id,
            "endpoint_arn": statement.excluded.endpoint_arn,
            "enabled": True,
            "disabled_reason": None,
            "updated_at": func.now(),
        },
    ).returning(Device)
    device: Device = (await session.scalars(upsert)).one()
    return device


async def count_devices(session: AsyncSession, user_id: str) -> int:
    """How many devices the user has, disabled ones included."""
    count = await session.scalar(
        select(func.count()).select_from(Device).where(Device.user_id == user_id)
    )
    return int(count or 0)


async def has_token(
    session: AsyncSession, user_id: str, platform: DevicePlatform, token: str
) -> bool:
    """Whether the user has registered this token already."""
    found = await session.scalar(
        select(Device.id).where(
            Device.user_id == user_id, Device.platform == platform, Device.token == token
        )
    )
    return found is not None


async def get_device(session: AsyncSession, user_id: str, device_id: uuid.UUID) -> Device | None:
    """One of the user's devices."""
    return (
        await session.scalars(
            select(Device).where(Device.id == device_id, Device.user_id == user_id)
        )
    ).one_or_none()


async def list_devices(
    session: AsyncSession, user_id: str, limit: int, after: Device | None
) -> Sequence[Device]:
    """Up to `limit` of the user's devices, newest first, after the cursor."""
    query = select(Device).where(Device.user_id == user_id)
    if after is not None:
        query = query.where(tuple_(Device.created_at, Device.id) < (after.created_at, after.id))
    query = query.order_by(Device.created_at.desc(), Device.id.desc()).limit(limit)
    return (await session.scalars(query)).all()


async def enabled_endpoints(session: AsyncSession, user_id: str) -> Sequence[tuple[str, str]]:
    """(platform, endpoint ARN) of the user's enabled devices."""
    rows = await session.execute(
        select(Device.platform, Device.endpoint_arn)
        .where(Device.user_id == user_id, Device.enabled.is_(True))
        .order_by(Device.created_at)
    )
    return [(row.platform, row.endpoint_arn) for row in rows]


async def enabled_endpoints_of(
    session: AsyncSession, user_ids: Collection[str]
) -> dict[str, list[tuple[str, str]]]:
    """(platform, endpoint ARN) of the enabled devices of each of several users, in one query."""
    rows = await session.execute(
        select(Device.user_id, Device.platform, Device.endpoint_arn)
        .where(Device.user_id.in_(list(user_ids)), Device.enabled.is_(True))
        .order_by(Device.created_at)
    )
    found: dict[str, list[tuple[str, str]]] = {user_id: [] for user_id in user_ids}
    for row in rows:
        found[row.user_id].append((row.platform, row.endpoint_arn))
    return found


async def disable_endpoint(session: AsyncSession, endpoint_arn: str, reason: str) -> None:
    """Mark the device with this SNS endpoint as disabled."""
    await session.execute(
        update(Device)
        .where(Device.endpoint_arn == endpoint_arn)
        .values(enabled=False, disabled_reason=reason, updated_at=func.now())
    )


async def delete_device(session: AsyncSession, device_id: uuid.UUID) -> None:
    """Remove a device row."""
    await session.execute(delete(Device).where(Device.id == device_id))
