"""`GET /notifications`: the caller's own notifications."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from micropay_common.db import SessionDep
from micropay_common.pagination import LIST_RESPONSES, Limit, Page
from micropay_common.security import CurrentUser
from notifications_microservice.models import Channel, Notification, NotificationStatus
from notifications_microservice.notifications import service
from notifications_microservice.notifications.schemas import NotificationRead

router = APIRouter(prefix="/notifications", tags=["notifications"])


def _read(notification: Notification) -> NotificationRead:
    read = NotificationRead.model_validate(notification)
    if notification.status == NotificationStatus.FAILED:
        read.failure_reason = notification.last_error
    return read


@router.get(
    "",
    response_model=Page[NotificationRead],
    summary="Your notifications",
    responses=LIST_RESPONSES,
)
async def list_notifications(
    user: CurrentUser,
    session: SessionDep,
    limit: Limit = 10,
    starting_after: uuid.UUID | None = None,
    channel: Channel | None = None,
    status: NotificationStatus | None = None,
) -> Page[NotificationRead]:
    """The caller's notifications on every channel, newest first; filter by channel or status."""
    rows = await service.list_notifications(
        session,
        user.id,
        limit=limit,
        starting_after=starting_after,
        channel=channel,
        status=status,
    )
    return Page[NotificationRead].of([_read(row) for row in rows], limit)
