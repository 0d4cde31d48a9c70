"""Configuration of the payment service (environment variables, see .env.example)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from micropay_common.money import format_amounts_by_currency, parse_amounts_by_currency
from micropay_common.settings import Secret, ServiceSettings


class AmountLimits(BaseModel):
    """Least and greatest top-up in one currency, in its minor units."""

    model_config = ConfigDict(frozen=True)

    min: int = Field(gt=0)
    max: int = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> AmountLimits:
        if self.min > self.max:
            raise ValueError("min must not exceed max")
        return self


# The wallet's currencies (the transactions service holds USD, EUR, GBP and JPY). Stripe's own
# minimum charge is about 0.50 in the two-decimal currencies and 50 yen.
DEFAULT_AMOUNT_LIMITS = "USD:50:1000000,EUR:50:1000000,GBP:50:1000000,JPY:50:1000000"


# A day's top-ups: at most what one top-up may be (10,000 in the two-decimal currencies).
DEFAULT_TOP_UP_LIMIT_PER_DAY = "EUR:1000000,GBP:1000000,JPY:1000000,USD:1000000"


def parse_amount_limits(spec: str) -> dict[str, AmountLimits]:
    """`CODE:MIN:MAX` entries, comma-separated, as a map (ValueError when malformed)."""
    limits: dict[str, AmountLimits] = {}
    for entry in filter(None, (part.strip() for part in spec.split(","))):
        code, _, bounds = entry.partition(":")
        low, _, high = bounds.partition(":")
        code = code.strip().upper()
        if len(code) != 3 or not code.isalpha():
            raise ValueError(f"{entry!r}: expected CODE:MIN:MAX with an ISO 4217 code")
        try:
            limits[code] = AmountLimits(min=int(low), max=int(high))
        except ValueError as exc:
            raise ValueError(f"{entry!r}: expected CODE:MIN:MAX in minor units") from exc
    if not limits:
        raise ValueError("at least one currency is needed")
    return limits


class PaymentSettings(ServiceSettings):
    """Settings of the payment service."""

    model_config = SettingsConfigDict(
        env_file=Path(__file__).with_name(".env"), env_file_encoding="utf-8", extra="ignore"
    )

    service_name: str = "payment"
    stripe_api_key: Secret
    stripe_api_base: str | None = None
    stripe_webhook_secret: Secret
    stripe_webhook_tolerance_seconds: int = Field(default=300, ge=1)
    stripe_timeout_seconds: float = Field(default=20.0, gt=0)
    stripe_max_network_retries: int = Field(default=2, ge=0, le=10)

    paypal_client_id: str = Field(
        default="", description="PayPal REST app's client id (blank: PayPal top-ups are off)."
    )
    # Optional, so not a `Secret` (which refuses to be empty); a secret all the same, kept in
    # the secret stores like STRIPE_API_KEY.
    paypal_client_secret: str = Field(default="", description="PayPal REST app's secret.")
    paypal_webhook_id: str = Field(
        default="", description="The id PayPal gave our webhook; every event is verified with it."
    )
    paypal_api_base: str = Field(
        default="https://api-m.sandbox.paypal.com",
        description="PayPal's REST API: sandbox, live (https://api-m.paypal.com) or the stand-in.",
    )
    paypal_timeout_seconds: float = Field(default=20.0, gt=0)
    paypal_max_network_retries: int = Field(default=2, ge=0, le=10)
    paypal_webhook_tolerance_seconds: int = Field(default=300, ge=1)

    payment_amount_limits: str = Field(
        default=DEFAULT_AMOUNT_LIMITS,
        description="Currencies a top-up may use, with their limits: CODE:MIN:MAX,...",
    )

    top_up_limit_per_day: str = Field(
        default=DEFAULT_TOP_UP_LIMIT_PER_DAY,
        description="Most a user may top up per UTC day per currency, CODE:AMOUNT,...",
    )

    reconcile_interval_seconds: float = Field(default=60.0, gt=0)
    reconcile_min_age_seconds: float = Field(default=120.0, ge=0)
    reconcile_batch_size: int = Field(default=50, ge=1)
    payment_action_timeout_seconds: float = Field(default=86_400.0, gt=0)

    @field_validator("stripe_api_base")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("payment_amount_limits")
    @classmethod
    def _valid_limits(cls, value: str) -> str:
        limits = parse_amount_limits(value)
        return ",".join(f"{code}:{lim.min}:{lim.max}" for code, lim in limits.items())

    @field_validator("top_up_limit_per_day")
    @classmethod
    def _valid_daily_limits(cls, value: str) -> str:
        return format_amounts_by_currency(parse_amounts_by_currency(value))

    @property
    def top_up_daily_limits(self) -> dict[str, int]:
        """Most one user may top up per UTC day, per currency (not listed: no limit)."""
        return parse_amounts_by_currency(self.top_up_limit_per_day)

    @property
    def paypal_enabled(self) -> bool:
        """PayPal top-ups are offered: the REST app's credentials are configured."""
        return bool(self.paypal_client_id and self.paypal_client_secret)

    @property
    def amount_limits(self) -> dict[str, AmountLimits]:
        """Least and greatest top-up per supported currency."""
        return parse_amount_limits(self.payment_amount_limits)

    @property
    def supported_currencies(self) -> list[str]:
        """Currencies a top-up may be made in."""
        return sorted(self.amount_limits)

    @property
    def lease_seconds(self) -> float:
        """How long one driver owns a payment or refund: its slowest Stripe and wallet calls."""
        attempts = self.stripe_max_network_retries + 1
        # stripe-python sleeps at most 5 s between retries; a refund makes three wallet calls.
        stripe_worst = self.stripe_timeout_seconds * attempts + 5.0 * attempts
        return stripe_worst + 3 * self.http_timeout_seconds + 10.0
