"""FastAPI dependencies of the transactions service."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from transactions_microservice.settings import TransactionsSettings


def get_settings(request: Request) -> TransactionsSettings:
    """The settings the app was started with."""
    settings: TransactionsSettings = request.app.state.settings
    return settings


SettingsDep = Annotated[TransactionsSettings, Depends(get_settings)]
