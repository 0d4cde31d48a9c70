"""Configuration of the notifications service (environment variables, see .env.example)."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from micropay_common.settings import ServiceSettings


class NotificationsSettings(ServiceSettings):
    """Settings of the notifications service."""

    model_config = SettingsConfigDict(
        env_file=Path(__file__).with_name(".env"), env_file_encoding="utf-8", extra="ignore"
    )

    service_name: str = "notifications"
    ses_sender: str
    sns_topic_arn: str
