"""MicroPay Auth: the FastAPI application (`uvicorn auth_microservice.main:app`)."""

from __future__ import annotations

from fastapi import FastAPI

from auth_microservice.client_ip import ClientAddressResolver
from auth_microservice.identity import IdentityProvider
from auth_microservice.jobs import purge_job
from auth_microservice.models import SCHEMA
from auth_microservice.sessions.repository import DenyList
from auth_microservice.sessions.router import gateway_router
from auth_microservice.sessions.router import router as sessions_router
from auth_microservice.settings import AuthSettings
from auth_microservice.state import AuthState
from auth_microservice.users.router import router as users_router
from micropay_common.app import create_service_app
from micropay_common.idempotency import idempotency_purge_job
from micropay_common.outbox import outbox_relay_job

VERSION = "0.2.0"


async def start_clients(state: AuthState) -> None:
    """Start-up hook: Cognito, the client-address resolver and the deny list's own pool."""
    settings = state.settings
    state.identity = IdentityProvider(settings)
    state.aws_calls.watch(state.identity.client)
    state.client_addresses = ClientAddressResolver(
        settings.trusted_proxies, settings.client_ip_header
    )
    state.deny_list = await DenyList.open(
        settings.database_url,
        max_size=settings.verify_db_pool_size,
        application_name=f"{settings.service_name}-verify",
    )


async def close_clients(state: AuthState) -> None:
    """Shut-down hook: close the deny list's pool."""
    await state.deny_list.aclose()


def build_app(settings: AuthSettings | None = None) -> FastAPI:
    """The auth service; settings from the environment unless given (tests, benchmarks)."""
    return create_service_app(
        settings_cls=AuthSettings,
        settings=settings,
        state_cls=AuthState,
        schema=SCHEMA,
        title="MicroPay Auth",
        description=(
            "Registration, login, token refresh and logout on AWS Cognito; "
            "the gateway's token check."
        ),
        version=VERSION,
        tags=[
            {"name": "auth", "description": "Sign-up, sign-in, tokens and the caller's identity."},
        ],
        routers=[gateway_router, users_router, sessions_router],
        on_startup=[start_clients],
        on_shutdown=[close_clients],
        background_jobs=[outbox_relay_job, idempotency_purge_job, purge_job],
        # nginx asks before every request it lets through, and logs the request itself.
        quiet_paths=["/auth/verify"],
    )


app = build_app()
