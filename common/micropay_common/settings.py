"""Settings base shared by every service, read from the environment (12-factor)."""

from __future__ import annotations

import sys
from typing import Annotated, TypeVar

from pydantic import AfterValidator, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from micropay_common.services import SERVICES, ServiceName
from micropay_common.services import service as service_named

SettingsT = TypeVar("SettingsT", bound="ServiceSettings")


def _not_blank(value: str) -> str:
    # An empty secret is a deployment mistake (a variable set from a missing secret) that
    # would otherwise surface later as signatures anyone can forge or logins that all fail.
    if not value.strip():
        raise ValueError("a secret must not be empty")
    return value


Secret = Annotated[str, AfterValidator(_not_blank)]
"""A setting whose value is a secret: required, and an empty value refuses to start."""


def _not_empty(value: str) -> str:
    # A variable set from something missing (a key id, an ARN) reads as "" and would only fail
    # at the first call that needs it.
    if not value.strip():
        raise ValueError("must not be empty")
    return value


Required = Annotated[str, AfterValidator(_not_empty)]
"""A required setting that is not a secret (a key id, an ARN): an empty value refuses to start."""


class ServiceSettings(BaseSettings):
    """What every service needs; field names map to the upper-case variables in DESIGN.md."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    service_name: str = "micropay"
    database_url: str
    # Connections opened beyond the pool are closed on return, so a load steadily above the
    # pool pays a connection (and PostgreSQL a backend) per request: the pool, not the
    # overflow, must cover a replica's usual concurrency. Four services at 16 + 4 stay within
    # PostgreSQL's default 100 connections.
    db_pool_size: int = Field(default=16, ge=1)
    db_max_overflow: int = Field(default=4, ge=0)
    db_ping_after_idle_seconds: float = Field(default=10.0, ge=0)
    log_level: str = "INFO"

    aws_region: str = "us-east-1"
    aws_endpoint_url: str | None = None

    cognito_user_pool_id: str
    cognito_client_id: str
    cognito_client_secret: Secret
    cognito_issuer: str
    cognito_jwks_url: str
    jwks_refetch_cooldown_seconds: float = Field(default=30.0, ge=0)

    service_account_username: str
    service_account_password: Secret

    auth_url: str = SERVICES[ServiceName.AUTH].local_url
    payment_url: str = SERVICES[ServiceName.PAYMENT].local_url
    transactions_url: str = SERVICES[ServiceName.TRANSACTIONS].local_url
    notifications_url: str = SERVICES[ServiceName.NOTIFICATIONS].local_url
    http_timeout_seconds: float = Field(default=10.0, gt=0)
    service_token_refresh_margin_seconds: float = Field(default=300.0, ge=0)

    outbox_poll_interval_seconds: float = Field(default=5.0, gt=0)
    outbox_batch_size: int = Field(default=50, ge=1)
    outbox_max_attempts: int = Field(default=12, ge=1)
    outbox_backoff_base_seconds: float = Field(default=1.0, gt=0)
    outbox_backoff_max_seconds: float = Field(default=600.0, gt=0)

    idempotency_ttl_hours: int = Field(default=24, ge=24)

    revocation_poll_interval_seconds: float = Field(default=0.5, gt=0)
    revocation_max_staleness_seconds: float = Field(default=1.0, gt=0)

    def service_url(self, service: str) -> str:
        """Base URL of another MicroPay service by its short name (its URL variable's value)."""
        url: str = getattr(self, service_named(service).url_variable.lower())
        return url.rstrip("/")


class SettingsError(SystemExit):
    """Raised at start-up when the environment does not describe a runnable service."""


def load_settings(settings_cls: type[SettingsT]) -> SettingsT:
    """Build settings from the environment, or stop with a message naming what is wrong."""
    try:
        return settings_cls()
    except ValidationError as exc:
        missing: list[str] = []
        invalid: list[str] = []
        for error in exc.errors():
            name = str(error["loc"][0]).upper() if error["loc"] else "?"
            if error["type"] == "missing":
                missing.append(name)
            else:
                invalid.append(f"{name} ({error['msg']})")
        parts = []
        if missing:
            parts.append("missing environment variables: " + ", ".join(missing))
        if invalid:
            parts.append("invalid environment variables: " + ", ".join(invalid))
        message = f"{settings_cls.__name__}: " + "; ".join(parts)
        print(message, file=sys.stderr)
        raise SettingsError(message) from None
