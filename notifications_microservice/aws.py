"""boto3 clients for SES, SNS and KMS, built once per app; every call runs in a worker thread.

The delivery worker's sends use the clients' endpoints and credentials with a lean client of
their own (`delivery.aws_query`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from notifications_microservice.settings import NotificationsSettings


@dataclass(frozen=True)
class AwsClients:
    """The service's SES, SNS and KMS clients (boto3 clients are safe to share between threads)."""

    ses: Any
    sns: Any
    kms: Any
    credentials: Credentials | None
    """The session's credentials (refreshed by botocore), for the sends signed outside boto3."""


def build_clients(settings: NotificationsSettings) -> AwsClients:
    """Clients with bounded timeouts and no botocore retries: the delivery worker retries."""
    config = Config(
        connect_timeout=settings.aws_timeout_seconds,
        read_timeout=settings.aws_timeout_seconds,
        retries={"total_max_attempts": 1, "mode": "standard"},
        # One kept connection per concurrent send: with fewer, urllib3 drops the surplus and
        # every send beyond them pays a new TLS handshake.
        max_pool_connections=max(10, settings.delivery_concurrency),
    )

    session = boto3.session.Session(region_name=settings.aws_region)

    def client(name: str) -> Any:
        return session.client(name, endpoint_url=settings.aws_endpoint_url, config=config)

    return AwsClients(
        ses=client("ses"),
        sns=client("sns"),
        kms=client("kms"),
        credentials=session.get_credentials(),
    )


def error_code(exc: BaseException) -> str:
    """AWS's error code of a failed call ("MessageRejected", "EndpointDisabled", …)."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code") or "ClientError")
    return type(exc).__name__


def describe(exc: BaseException) -> str:
    """A one-line reason for logs and `last_error`."""
    if isinstance(exc, ClientError):
        message = exc.response.get("Error", {}).get("Message") or str(exc)
        return f"{error_code(exc)}: {message}"
    return f"{type(exc).__name__}: {exc}"
