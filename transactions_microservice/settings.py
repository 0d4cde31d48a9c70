"""Configuration of the transactions service (environment variables, see .env.example)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from micropay_common.money import SUPPORTED_CURRENCIES
from micropay_common.settings import ServiceSettings


class TransactionsSettings(ServiceSettings):
    """Settings of the transactions service."""

    model_config = SettingsConfigDict(
        env_file=Path(__file__).with_name(".env"), env_file_encoding="utf-8", extra="ignore"
    )

    service_name: str = "transactions"
    default_currency: str = "USD"
    hold_ttl_seconds: int = Field(default=900, ge=1)
    hold_sweep_interval_seconds: float = Field(default=10.0, gt=0)

    @field_validator("default_currency")
    @classmethod
    def _supported_currency(cls, value: str) -> str:
        code = value.upper()
        if code not in SUPPORTED_CURRENCIES:
            raise ValueError(f"must be one of {', '.join(sorted(SUPPORTED_CURRENCIES))}")
        return code
