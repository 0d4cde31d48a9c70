"""`/notifications/webhooks`: the caller's webhook endpoints and their delivery log."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Response, status

from micropay_common.db import SessionDep
from micropay_common.pagination import LIST_RESPONSES, Limit, Page
from micropay_common.security import CurrentUser
from notifications_microservice.dependencies import SettingsDep, WebhookSecretsDep
from notifications_microservice.models import NotificationStatus
from notifications_microservice.webhooks import service
from notifications_microservice.webhooks.schemas import (
    RedeliveryRead,
    WebhookDeliveryRead,
    WebhookEndpointCreate,
    WebhookEndpointCreated,
    WebhookEndpointRead,
)

router = APIRouter(prefix="/notifications/webhooks", tags=["notifications"])

_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such endpoint among yours"}}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=WebhookEndpointCreated,
    summary="Add a webhook endpoint (its secret is shown only now)",
    responses={
        409: {"description": "Too many endpoints"},
        422: {"description": "Malformed URL, or one leading to a private address"},
        503: {"description": "The key service that protects signing secrets is unavailable"},
    },
)
async def create_webhook_endpoint(
    body: WebhookEndpointCreate,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    secrets: WebhookSecretsDep,
) -> WebhookEndpointCreated:
    """Register a URL to receive signed events; the response holds the signing secret once."""
    created = await service.create_endpoint(session, user.id, body, settings, secrets)
    read = WebhookEndpointRead.model_validate(created.endpoint)
    return WebhookEndpointCreated(**read.model_dump(), secret=created.secret)


@router.get(
    "",
    response_model=Page[WebhookEndpointRead],
    summary="Your webhook endpoints",
    responses=LIST_RESPONSES,
)
async def list_webhook_endpoints(
    user: CurrentUser,
    session: SessionDep,
    limit: Limit = 10,
    starting_after: uuid.UUID | None = None,
) -> Page[WebhookEndpointRead]:
    """The caller's endpoints, newest first (secrets are never shown again)."""
    endpoints = await service.list_endpoints(session, user.id, limit, starting_after)
    return Page[WebhookEndpointRead].of(
        [WebhookEndpointRead.model_validate(e) for e in endpoints], limit
    )


@router.get(
    "/{endpoint_id}",
    response_model=WebhookEndpointRead,
    summary="One of your webhook endpoints",
    responses=_NOT_FOUND,
)
async def get_webhook_endpoint(
    endpoint_id: uuid.UUID, user: CurrentUser, session: SessionDep
) -> WebhookEndpointRead:
    """One endpoint of the caller's."""
    endpoint = await service.get_endpoint(session, user.id, endpoint_id)
    return WebhookEndpointRead.model_validate(endpoint)


@router.delete(
    "/{endpoint_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a webhook endpoint",
    responses=_NOT_FOUND,
)
async def delete_webhook_endpoint(
    endpoint_id: uuid.UUID, user: CurrentUser, session: SessionDep
) -> Response:
    """Stop sending to the endpoint; messages still waiting for it are marked failed."""
    await service.delete_endpoint(session, user.id, endpoint_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{endpoint_id}/deliveries",
    response_model=Page[WebhookDeliveryRead],
    summary="Delivery attempts to an endpoint",
    responses={**_NOT_FOUND, **LIST_RESPONSES},
)
async def list_webhook_deliveries(
    endpoint_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    limit: Limit = 10,
    starting_after: int | None = None,
) -> Page[WebhookDeliveryRead]:
    """Every attempt (status, truncated response, duration), newest first."""
    rows = await service.list_deliveries(session, user.id, endpoint_id, limit, starting_after)
    return Page[WebhookDeliveryRead].of(
        [WebhookDeliveryRead.model_validate(row) for row in rows], limit
    )


@router.post(
    "/{endpoint_id}/deliveries/{delivery_id}/redeliver",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RedeliveryRead,
    summary="Send the message of a delivery again",
    responses={
        **_NOT_FOUND,
        409: {"description": "The endpoint is disabled, or the message is being sent now"},
        429: {"description": "Too many redeliveries on this endpoint this minute (Retry-After)"},
    },
)
async def redeliver_webhook(
    endpoint_id: uuid.UUID,
    delivery_id: int,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
) -> RedeliveryRead:
    """Queue the message for one more attempt now, whatever became of the earlier ones."""
    queued = await service.redeliver(session, user.id, endpoint_id, delivery_id, settings)
    return RedeliveryRead(
        notification_id=queued["id"],
        status=NotificationStatus.PENDING,
        next_attempt_at=queued["next_attempt_at"],
    )
