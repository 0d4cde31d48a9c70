"""Configuration of the transactions service (environment variables, see .env.example)."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from micropay_common.settings import ServiceSettings


class TransactionsSettings(ServiceSettings):
    """Settings of the transactions service."""

    model_config = SettingsConfigDict(
        env_file=Path(__file__).with_name(".env"), env_file_encoding="utf-8", extra="ignore"
    )

    service_name: str = "transactions"
    default_currency: str = "USD"
