"""Configuration of the auth service (environment variables, see .env.example)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import SettingsConfigDict

from micropay_common.settings import ServiceSettings


class AuthSettings(ServiceSettings):
    """Settings of the auth service."""

    model_config = SettingsConfigDict(
        env_file=Path(__file__).with_name(".env"), env_file_encoding="utf-8", extra="ignore"
    )

    service_name: str = "auth"
    auth_auto_confirm: bool = False
    """Confirm sign-ups without a code: only against a local stand-in (AWS_ENDPOINT_URL set)."""
    trusted_proxies: str = "127.0.0.1"
    """Comma-separated addresses or networks whose client header / X-Forwarded-For are believed."""
    client_ip_header: str = Field(default="X-Real-IP", min_length=1)
    """The header in which a trusted proxy names the client (API Gateway: X-Client-IP)."""
    login_delay_after_failures_per_email: int = Field(default=3, ge=1)
    """Failures of one email within the window before each further sign-in of it must wait."""
    login_delay_after_failures_per_ip: int = Field(default=10, ge=1)
    """Failures from one client address within the window before its sign-ins must wait."""
    login_delay_base_seconds: float = Field(default=1.0, gt=0)
    """The first wait; each further failure doubles it, up to LOGIN_DELAY_MAX_SECONDS."""
    login_delay_max_seconds: float = Field(default=60.0, gt=0)
    login_max_failures_per_ip: int = Field(default=20, ge=1)
    """Failures from one client address within the window before it is refused outright."""
    login_failure_window_seconds: int = Field(default=900, ge=1)
    signup_max_per_ip: int = Field(default=20, ge=1)
    """Sign-ups (POST /auth/register) from one client address within the sign-up window."""
    confirm_max_attempts_per_ip: int = Field(default=30, ge=1)
    """Confirmation attempts (right or wrong) from one client address within the window."""
    confirm_max_attempts_per_email: int = Field(default=10, ge=1)
    """Confirmation attempts for one email, from any address, within the window (code guessing)."""
    resend_max_per_ip: int = Field(default=10, ge=1)
    """Code resends asked for from one client address within the window."""
    resend_max_per_email: int = Field(default=5, ge=1)
    """Code resends asked for one email, from any address, within the window (mail bombing)."""
    signup_window_seconds: int = Field(default=3600, ge=1)
    """The sliding window of the sign-up, confirmation and resend limits."""
    refresh_token_validity_days: int = Field(default=30, ge=1)
    """Must match the app client's RefreshTokenValidity: how long a sign-in is remembered."""
    auth_cookie_secure: bool = True
    """Mark the browser's session cookies Secure (HTTPS only); off only for a plain-http stack."""
    cognito_timeout_seconds: float = Field(default=5.0, gt=0)
    cognito_max_attempts: int = Field(default=2, ge=1)
    verify_db_pool_size: int = Field(default=4, ge=1)
    """Connections of the deny-list probe behind GET /auth/verify (besides DB_POOL_SIZE)."""
    auth_purge_interval_seconds: float = Field(default=300.0, gt=0)

    @field_validator("auth_auto_confirm")
    @classmethod
    def _auto_confirm_only_on_a_stand_in(cls, value: bool, info: ValidationInfo) -> bool:
        # An unproven email would get a wallet and receive transfers meant for its real owner.
        if value and not info.data.get("aws_endpoint_url"):
            raise ValueError(
                "AUTH_AUTO_CONFIRM=true is allowed only with a local AWS stand-in "
                "(AWS_ENDPOINT_URL set); in AWS users confirm their email with the code"
            )
        return value
