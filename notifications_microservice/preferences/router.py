"""`/notifications/preferences`: which channels the caller receives for each event type."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body

from micropay_common.db import SessionDep
from micropay_common.security import CurrentUser
from notifications_microservice.preferences import service
from notifications_microservice.preferences.schemas import (
    PREFERENCES_EXAMPLE,
    UPDATE_EXAMPLES,
    ChannelPreferences,
    ChannelPreferencesUpdate,
)

router = APIRouter(prefix="/notifications/preferences", tags=["notifications"])

_MAP_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Every event type you can receive, with the channels that are on",
        "content": {"application/json": {"example": PREFERENCES_EXAMPLE}},
    }
}


@router.get(
    "",
    response_model=dict[str, ChannelPreferences],
    summary="Your notification preferences",
    responses=_MAP_RESPONSE,
)
async def get_preferences(user: CurrentUser, session: SessionDep) -> dict[str, ChannelPreferences]:
    """Every event type you can receive and whether email, push and webhooks are on for it."""
    return await service.get_preferences(session, user.id)


@router.put(
    "",
    response_model=dict[str, ChannelPreferences],
    summary="Change your notification preferences",
    responses={
        **_MAP_RESPONSE,
        422: {
            "description": (
                "An unknown event type (`unknown_event_type`) or channel (`validation_error`), "
                "or a security notice turned off (`security_notice_required`); nothing changed"
            )
        },
    },
)
async def update_preferences(
    changes: Annotated[dict[str, ChannelPreferencesUpdate], Body(openapi_examples=UPDATE_EXAMPLES)],
    user: CurrentUser,
    session: SessionDep,
) -> dict[str, ChannelPreferences]:
    """Change the channels of the event types named; the others keep their settings."""
    return await service.update_preferences(session, user.id, changes)
