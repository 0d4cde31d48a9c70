"""Problems of the webhooks domain."""

from __future__ import annotations

from micropay_common.errors import (
    Conflict,
    NotFound,
    ServiceUnavailable,
    TooManyRequests,
    UnprocessableEntity,
)


class InvalidWebhookUrl(UnprocessableEntity):
    """The URL is malformed, or it leads to an address webhooks may not reach."""

    type = "invalid_webhook_url"
    title = "Webhook URL not allowed"


class WebhookEndpointNotFound(NotFound):
    """No such endpoint among the caller's (deleted ones included)."""

    title = "Webhook endpoint not found"


class WebhookDeliveryNotFound(NotFound):
    """No such delivery attempt on this endpoint."""

    title = "Webhook delivery not found"


class TooManyWebhookEndpoints(Conflict):
    """The caller already has the most endpoints allowed."""

    type = "too_many_webhook_endpoints"
    title = "Too many webhook endpoints"


class WebhookEndpointDisabled(Conflict):
    """The endpoint was disabled (it answered 410 Gone); nothing more is sent to it."""

    type = "webhook_endpoint_disabled"
    title = "Webhook endpoint disabled"


class DeliveryInProgress(Conflict):
    """A worker is sending this message right now."""

    type = "delivery_in_progress"
    title = "Delivery in progress"


class TooManyRedeliveries(TooManyRequests):
    """The endpoint had as many manual redeliveries as a minute allows."""

    type = "too_many_redeliveries"
    title = "Too many redeliveries"


class WebhookSecretsUnavailable(ServiceUnavailable):
    """KMS, which seals and opens signing secrets, did not answer or refused to work."""

    type = "webhook_secrets_unavailable"
    title = "Webhook secrets unavailable"
