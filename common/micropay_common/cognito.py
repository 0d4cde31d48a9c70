"""Cognito helpers shared by the auth service and the service-account client."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import boto3
from botocore.config import Config

from micropay_common.settings import ServiceSettings

BOTO_CONFIG = Config(
    connect_timeout=3,
    read_timeout=10,
    retries={"max_attempts": 3, "mode": "standard"},
)


def secret_hash(username: str, client_id: str, client_secret: str) -> str:
    """Cognito's SECRET_HASH: base64(HMAC-SHA256(secret, username + client_id))."""
    digest = hmac.new(
        client_secret.encode(), (username + client_id).encode(), hashlib.sha256
    ).digest()
    return base64.b64encode(digest).decode()


def cognito_client(settings: ServiceSettings) -> Any:
    """A boto3 cognito-idp client for the configured region (and local endpoint, if any)."""
    return boto3.client(
        "cognito-idp",
        region_name=settings.aws_region,
        endpoint_url=settings.aws_endpoint_url,
        config=BOTO_CONFIG,
    )
