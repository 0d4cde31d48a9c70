"""Rules of webhook endpoints: safe URLs, sealed secrets shown once, soft deletion, redelivery."""

from __future__ import annotations

import base64
import math
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from micropay_common.locks import lock_for_transaction
from micropay_common.pagination import InvalidCursor
from micropay_common.wakeup import announce
from notifications_microservice.models import (
    NOTIFICATIONS_DUE_CHANNEL,
    WebhookEndpoint,
    WebhookEndpointStatus,
)
from notifications_microservice.settings import NotificationsSettings
from notifications_microservice.webhooks import repository
from notifications_microservice.webhooks.exceptions import (
    DeliveryInProgress,
    TooManyRedeliveries,
    TooManyWebhookEndpoints,
    WebhookDeliveryNotFound,
    WebhookEndpointDisabled,
    WebhookEndpointNotFound,
)
from notifications_microservice.webhooks.schemas import WebhookEndpointCreate
from notifications_microservice.webhooks.secrets import (
    SealedSecret,
    SecretUnreadable,
    WebhookSecrets,
)
from notifications_microservice.webhooks.urls import Resolver, check_destination, resolve_host

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
SECRET_BYTES = 24
REDELIVERY_WINDOW = timedelta(minutes=1)


def new_secret() -> str:
    """A Standard Webhooks signing secret: `whsec_` and 24 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


@dataclass(frozen=True)
class CreatedEndpoint:
    """A new endpoint and its signing secret in clear, which only its creation shows."""

    endpoint: WebhookEndpoint
    secret: str


async def create_endpoint(
    session: AsyncSession,
    user_id: str,
    request: WebhookEndpointCreate,
    settings: NotificationsSettings,
    secrets_box: WebhookSecrets,
    *,
    resolver: Resolver = resolve_host,
) -> CreatedEndpoint:
    """Add an endpoint for the user after checking where its URL leads; its secret sealed."""
    await check_destination(
        request.url,
        allow_private=settings.webhooks_allow_private_urls,
        allowed_ports=settings.webhook_allowed_ports,
        resolver=resolver,
    )
    # Two creations at once would both count the endpoints before either adds one: the user's
    # lock, held until the transaction ends, makes them count one after the other.
    await lock_for_transaction(session, f"notifications.webhook_endpoints:{user_id}")
    if await count_live(session, user_id) >= settings.webhook_max_endpoints_per_user:
        raise TooManyWebhookEndpoints(
            f"You have {settings.webhook_max_endpoints_per_user} webhook endpoints already; "
            "delete one first."
        )
    endpoint_id = uuid.uuid4()
    secret = new_secret()
    sealed = await secrets_box.seal(endpoint_id, secret)
    endpoint = WebhookEndpoint(
        id=endpoint_id,
        user_id=user_id,
        url=request.url,
        event_types=list(request.events),
        secret_key_id=sealed.key_id,
        secret_encrypted_key=sealed.encrypted_key,
        secret_nonce=sealed.nonce,
        secret_ciphertext=sealed.ciphertext,
    )
    return CreatedEndpoint(await repository.add_endpoint(session, endpoint), secret)


async def count_live(session: AsyncSession, user_id: str) -> int:
    """How many endpoints the user has."""
    return await repository.count_live_endpoints(session, user_id)


async def get_endpoint(
    session: AsyncSession, user_id: str, endpoint_id: uuid.UUID
) -> WebhookEndpoint:
    """One of the user's endpoints, or 404."""
    endpoint = await repository.get_endpoint(session, user_id, endpoint_id)
    if endpoint is None:
        raise WebhookEndpointNotFound(f"You have no webhook endpoint {endpoint_id}.")
    return endpoint


async def list_endpoints(
    session: AsyncSession, user_id: str, limit: int, starting_after: uuid.UUID | None
) -> Sequence[WebhookEndpoint]:
    """A page (plus one) of the user's endpoints, newest first."""
    after = None
    if starting_after is not None:
        after = await repository.get_endpoint(session, user_id, starting_after)
        if after is None:
            raise InvalidCursor(f"starting_after: you have no webhook endpoint {starting_after}.")
    return await repository.list_endpoints(session, user_id, limit + 1, after)


async def delete_endpoint(session: AsyncSession, user_id: str, endpoint_id: uuid.UUID) -> None:
    """Stop sending to the endpoint; messages still waiting for it are marked failed."""
    endpoint = await repository.get_endpoint(session, user_id, endpoint_id, for_update=True)
    if endpoint is None:
        raise WebhookEndpointNotFound(f"You have no webhook endpoint {endpoint_id}.")
    await repository.set_endpoint_status(
        session, endpoint.id, WebhookEndpointStatus.DELETED, "deleted by its owner"
    )
    await repository.fail_waiting_deliveries(session, endpoint.id, "webhook endpoint deleted")


async def subscribed_endpoints(
    session: AsyncSession, user_id: str, event_type: str
) -> Sequence[uuid.UUID]:
    """The ids of the user's enabled endpoints that asked for `event_type`."""
    return await repository.subscribed_endpoints(session, user_id, event_type)


async def disable_endpoint(session: AsyncSession, endpoint_id: uuid.UUID, reason: str) -> None:
    """Stop sending to an endpoint that cannot receive; messages waiting for it fail."""
    await repository.set_endpoint_status(
        session, endpoint_id, WebhookEndpointStatus.DISABLED, reason
    )
    await repository.fail_waiting_deliveries(
        session, endpoint_id, f"webhook endpoint disabled: {reason}"
    )


async def list_deliveries(
    session: AsyncSession,
    user_id: str,
    endpoint_id: uuid.UUID,
    limit: int,
    starting_after: int | None,
) -> Sequence[RowMapping]:
    """A page (plus one) of the endpoint's delivery attempts, newest first."""
    endpoint = await get_endpoint(session, user_id, endpoint_id)
    if (
        starting_after is not None
        and await repository.get_delivery(session, endpoint.id, starting_after) is None
    ):
        raise InvalidCursor(f"starting_after: this endpoint has no delivery {starting_after}.")
    return await repository.list_deliveries(session, endpoint.id, limit + 1, starting_after)


async def redeliver(
    session: AsyncSession,
    user_id: str,
    endpoint_id: uuid.UUID,
    delivery_id: int,
    settings: NotificationsSettings,
) -> RowMapping:
    """Queue the message of a past attempt for one more attempt now (a few a minute at most)."""
    # The endpoint's row lock makes concurrent requests, on any replica, count one by one.
    endpoint = await repository.get_endpoint(session, user_id, endpoint_id, for_update=True)
    if endpoint is None:
        raise WebhookEndpointNotFound(f"You have no webhook endpoint {endpoint_id}.")
    if endpoint.status != WebhookEndpointStatus.ENABLED:
        raise WebhookEndpointDisabled(
            f"The endpoint is disabled ({endpoint.disabled_reason}); create a new one."
        )
    await _count_redelivery(session, endpoint.id, settings.webhook_redeliveries_per_minute)
    delivery = await repository.get_delivery(session, endpoint.id, delivery_id)
    if delivery is None:
        raise WebhookDeliveryNotFound(f"This endpoint has no delivery {delivery_id}.")
    queued = await repository.requeue_message(session, delivery["notification_id"])
    if queued is None:
        raise DeliveryInProgress(
            "This message is being sent right now; look at its deliveries in a moment.",
            headers={"Retry-After": "5"},
        )
    await announce(session, NOTIFICATIONS_DUE_CHANNEL)
    return queued


async def _count_redelivery(session: AsyncSession, endpoint_id: uuid.UUID, limit: int) -> None:
    """Record one more redelivery request, or refuse it when the last minute had `limit`."""
    now, recent = await repository.recent_redeliveries(session, endpoint_id, REDELIVERY_WINDOW)
    if len(recent) >= limit:
        # Free again when the oldest request that counts leaves the window.
        wait = (recent[-limit] + REDELIVERY_WINDOW - now).total_seconds()
        raise TooManyRedeliveries(
            f"This endpoint had {limit} redeliveries in the last minute; try again later.",
            retry_after=max(1, math.ceil(wait)),
        )
    await repository.add_redelivery(session, endpoint_id)


async def signing_secret(
    secrets_box: WebhookSecrets,
    endpoint_id: uuid.UUID,
    sealed: SealedSecret | None,
    legacy_secret: str | None,
) -> str:
    """The secret that signs a delivery to the endpoint: its sealed one opened, else the clear
    one of a row written before secrets were sealed and not sealed yet."""
    if sealed is not None:
        return await secrets_box.open(endpoint_id, sealed)
    if legacy_secret is None:
        raise SecretUnreadable(f"webhook endpoint {endpoint_id} has no signing secret")
    return legacy_secret


async def legacy_secrets(session: AsyncSession, limit: int) -> list[tuple[uuid.UUID, str]]:
    """Up to `limit` endpoints whose secret is still stored in clear, with it."""
    return await repository.legacy_secrets(session, limit)


async def store_sealed_secret(
    session: AsyncSession, endpoint_id: uuid.UUID, secret: str, sealed: SealedSecret
) -> bool:
    """Replace the endpoint's clear secret by its sealed form, unless it changed meanwhile."""
    return await repository.seal_legacy_secret(session, endpoint_id, secret, sealed) == 1
