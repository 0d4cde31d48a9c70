"""Configuration of the transactions service (environment variables, see .env.example)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from micropay_common.money import (
    SUPPORTED_CURRENCIES,
    format_amounts_by_currency,
    parse_amounts_by_currency,
)
from micropay_common.settings import ServiceSettings

# A transfer of at most 2,500 and 5,000 a day in the two-decimal currencies; in yen about the
# same value. Sensible for a consumer wallet; operators raise them per deployment.
DEFAULT_TRANSFER_LIMIT_PER_TRANSACTION = "EUR:250000,GBP:250000,JPY:250000,USD:250000"
DEFAULT_TRANSFER_LIMIT_PER_DAY = "EUR:500000,GBP:500000,JPY:500000,USD:500000"


class TransactionsSettings(ServiceSettings):
    """Settings of the transactions service."""

    model_config = SettingsConfigDict(
        env_file=Path(__file__).with_name(".env"), env_file_encoding="utf-8", extra="ignore"
    )

    service_name: str = "transactions"
    default_currency: str = "USD"
    hold_ttl_seconds: int = Field(default=900, ge=1)
    hold_sweep_interval_seconds: float = Field(default=10.0, gt=0)
    money_request_ttl_seconds: int = Field(
        default=30 * 24 * 3600,
        ge=1,
        description="How long a money request stays open before it expires.",
    )
    money_request_sweep_interval_seconds: float = Field(
        default=60.0, gt=0, description="How often open money requests past their expiry close."
    )
    invitation_ttl_seconds: int = Field(
        default=7 * 24 * 3600,
        ge=1,
        description="How long money sent to an email without an account waits for its sign-up.",
    )
    invitation_sweep_interval_seconds: float = Field(
        default=60.0, gt=0, description="How often pending invitations past their expiry close."
    )
    ledger_check_interval_seconds: float = Field(
        default=600.0,
        gt=0,
        description="How often each replica checks the ledger's invariants for /metrics.",
    )

    transfer_limit_per_transaction: str = Field(
        default=DEFAULT_TRANSFER_LIMIT_PER_TRANSACTION,
        description="Largest transfer per currency, CODE:AMOUNT,... (a currency not listed: none).",
    )
    transfer_limit_per_day: str = Field(
        default=DEFAULT_TRANSFER_LIMIT_PER_DAY,
        description="Most a user may send per UTC day per currency, CODE:AMOUNT,...",
    )
    card_funds_settle_seconds: int = Field(
        default=0,
        ge=0,
        description="How long card money without 3-D Secure waits before it can be sent on.",
    )

    @field_validator("default_currency")
    @classmethod
    def _supported_currency(cls, value: str) -> str:
        code = value.upper()
        if code not in SUPPORTED_CURRENCIES:
            raise ValueError(f"must be one of {', '.join(sorted(SUPPORTED_CURRENCIES))}")
        return code

    @field_validator("transfer_limit_per_transaction", "transfer_limit_per_day")
    @classmethod
    def _valid_amounts(cls, value: str) -> str:
        return format_amounts_by_currency(parse_amounts_by_currency(value))

    @property
    def transfer_max_amounts(self) -> dict[str, int]:
        """Largest single transfer per currency (a currency not listed has no such limit)."""
        return parse_amounts_by_currency(self.transfer_limit_per_transaction)

    @property
    def transfer_daily_limits(self) -> dict[str, int]:
        """Most one user may send per UTC day, per currency (not listed: no limit)."""
        return parse_amounts_by_currency(self.transfer_limit_per_day)
