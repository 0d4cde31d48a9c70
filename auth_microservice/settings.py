"""Configuration of the auth service (environment variables, see .env.example)."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from micropay_common.settings import ServiceSettings


class AuthSettings(ServiceSettings):
    """Settings of the auth service."""

    model_config = SettingsConfigDict(
        env_file=Path(__file__).with_name(".env"), env_file_encoding="utf-8", extra="ignore"
    )

    service_name: str = "auth"
    auth_auto_confirm: bool = False
