"""Configuration of the notifications service (environment variables, see .env.example)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from micropay_common.settings import Required, ServiceSettings

# Svix's schedule: the first attempt at once, then these delays after each failure.
SVIX_RETRY_SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0)
MESSAGE_RETRY_SCHEDULE = (5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0)

RetrySchedule = Annotated[tuple[float, ...], NoDecode]
PortList = Annotated[frozenset[int], NoDecode]


class NotificationsSettings(ServiceSettings):
    """Settings of the notifications service."""

    model_config = SettingsConfigDict(
        env_file=Path(__file__).with_name(".env"), env_file_encoding="utf-8", extra="ignore"
    )

    service_name: str = "notifications"
    ses_sender: str
    sns_topic_arn: str
    # Platform applications of push devices; unset, one named micropay-<platform> is found or
    # created (creating needs no credentials only in the local stand-in).
    sns_apns_application_arn: str | None = None
    sns_apns_sandbox_application_arn: str | None = None
    sns_fcm_application_arn: str | None = None
    aws_timeout_seconds: float = Field(default=10.0, gt=0)
    devices_per_user_max: int = Field(default=20, ge=1)

    webhooks_allow_private_urls: bool = False
    # Ports webhook URLs may name ("443"; empty: any). Where an egress policy lets the service
    # reach only some ports, set the same ones, so an endpoint that could never be reached is
    # refused at registration instead of failing every delivery.
    webhook_allowed_ports: PortList = frozenset()
    webhook_timeout_seconds: float = Field(default=15.0, gt=0)
    webhook_retry_schedule: RetrySchedule = SVIX_RETRY_SCHEDULE
    webhook_max_endpoints_per_user: int = Field(default=20, ge=1)
    webhook_redeliveries_per_minute: int = Field(default=10, ge=1)
    # The KMS key that seals webhook signing secrets: key id, key ARN or alias
    # (alias/micropay-webhook-secrets in every deployment); KMS is reached like SES and SNS.
    webhook_secrets_kms_key_id: Required
    # Decrypted data keys kept in memory (0 keeps none): each delivery need not call KMS.
    webhook_secrets_key_cache_seconds: float = Field(default=300.0, ge=0)
    webhook_secrets_key_cache_size: int = Field(default=1000, ge=0)

    delivery_poll_interval_seconds: float = Field(default=5.0, gt=0)
    # After a pass that sent something but was not full, the worker rests this long before the
    # next one, so that the events of a busy moment are sent in a few full batches rather than
    # one small batch per event (a pass has a cost of its own); an idle worker answers a wake
    # at once.
    delivery_gather_seconds: float = Field(default=0.05, ge=0, le=5)
    # Rows one pass claims, and sends in flight at once: bounded, so a backlog drains at the
    # providers' rate without taking the database or the CPU from the money path.
    delivery_batch_size: int = Field(default=100, ge=1, le=1000)
    delivery_concurrency: int = Field(default=16, ge=1, le=256)
    delivery_lease_seconds: float = Field(default=120.0, gt=0)
    delivery_retry_schedule: RetrySchedule = MESSAGE_RETRY_SCHEDULE
    # SES's MaxSendRate is read with GetSendQuota at start and this often; a configured rate
    # replaces it (a stand-in whose quota means nothing, or an account shared with others).
    ses_quota_refresh_seconds: float = Field(default=300.0, gt=0)
    ses_max_send_rate: float | None = Field(default=None, gt=0)
    # SNS has no quota call: the account's Publish rate in its region (messages a second).
    sns_publish_rate_per_second: float = Field(default=1500.0, gt=0)

    @field_validator("webhook_retry_schedule", "delivery_retry_schedule", mode="before")
    @classmethod
    def _comma_separated_seconds(cls, value: Any) -> Any:
        if isinstance(value, str):
            # "5,300,1800"; a JSON list or a Python tuple of numbers reads the same.
            parts = [part.strip() for part in value.strip("[]() ").split(",") if part.strip()]
            return tuple(float(part) for part in parts)
        return value

    @field_validator("webhook_allowed_ports", mode="before")
    @classmethod
    def _comma_separated_ports(cls, value: Any) -> Any:
        if isinstance(value, str):
            # "443" or "443,8443"; a JSON list reads the same.
            parts = [part.strip() for part in value.strip("[]() ").split(",") if part.strip()]
            return frozenset(int(part) for part in parts)
        return value

    @field_validator("webhook_allowed_ports")
    @classmethod
    def _valid_ports(cls, value: frozenset[int]) -> frozenset[int]:
        if any(not 0 < port < 65536 for port in value):
            raise ValueError("ports are numbers from 1 to 65535")
        return value

    @field_validator("webhook_retry_schedule", "delivery_retry_schedule")
    @classmethod
    def _non_negative_delays(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(delay < 0 for delay in value):
            raise ValueError("retry delays must be zero or more seconds")
        return value

    @model_validator(mode="after")
    def _lease_outlasts_a_send(self) -> NotificationsSettings:
        # A send must end before its lease does, or a second worker could send the same row.
        longest_send = max(self.webhook_timeout_seconds, self.aws_send_budget_seconds)
        if self.delivery_lease_seconds < 2 * longest_send:
            raise ValueError(
                f"DELIVERY_LEASE_SECONDS must be at least {2 * longest_send:g} "
                "(twice the longest send: WEBHOOK_TIMEOUT_SECONDS or AWS_TIMEOUT_SECONDS x 2)"
            )
        return self

    @property
    def aws_send_budget_seconds(self) -> float:
        """Longest one SES/SNS call can take: connect plus read timeout."""
        return 2 * self.aws_timeout_seconds

    @property
    def send_budget_seconds(self) -> float:
        """Longest any single send can take, whatever its channel."""
        return max(self.webhook_timeout_seconds, self.aws_send_budget_seconds)
