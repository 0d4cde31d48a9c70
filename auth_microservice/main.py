"""MicroPay Auth: the FastAPI application (`uvicorn auth_microservice.main:app`)."""

from __future__ import annotations

from auth_microservice.settings import AuthSettings
from micropay_common.app import create_service_app
from micropay_common.idempotency import idempotency_purge_job
from micropay_common.outbox import outbox_relay_job

VERSION = "0.1.0"

app = create_service_app(
    settings_cls=AuthSettings,
    schema="auth",
    title="MicroPay Auth",
    description=(
        "Registration, login, token refresh and logout on AWS Cognito; the gateway's token check."
    ),
    version=VERSION,
    tags=[
        {"name": "auth", "description": "Sign-up, sign-in, tokens and the caller's identity."},
    ],
    routers=[],
    background_jobs=[outbox_relay_job, idempotency_purge_job],
)
