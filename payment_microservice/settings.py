"""Configuration of the payment service (environment variables, see .env.example)."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from micropay_common.settings import ServiceSettings


class PaymentSettings(ServiceSettings):
    """Settings of the payment service."""

    model_config = SettingsConfigDict(
        env_file=Path(__file__).with_name(".env"), env_file_encoding="utf-8", extra="ignore"
    )

    service_name: str = "payment"
    stripe_api_key: str
    stripe_api_base: str | None = None
    stripe_webhook_secret: str
