"""MicroPay Transactions: the FastAPI application (`uvicorn transactions_microservice.main:app`)."""

from __future__ import annotations

from fastapi import FastAPI

from micropay_common.app import create_service_app
from micropay_common.http import ServiceClient
from micropay_common.idempotency import idempotency_purge_job
from micropay_common.outbox import outbox_relay_job
from transactions_microservice.accounts.router import router as accounts_router
from transactions_microservice.holds.jobs import hold_expiry_job
from transactions_microservice.holds.router import router as holds_router
from transactions_microservice.inbound.router import inbound_router
from transactions_microservice.inbound.service import EventHandlers
from transactions_microservice.invitations.jobs import invitation_expiry_job
from transactions_microservice.invitations.router import router as invitations_router
from transactions_microservice.ledger.jobs import ledger_check_job
from transactions_microservice.ledger.router import internal_router as ledger_internal_router
from transactions_microservice.ledger.router import router as ledger_router
from transactions_microservice.limits.router import router as limits_router
from transactions_microservice.limits.top_ups import TopUpAllowanceClient
from transactions_microservice.models import SCHEMA
from transactions_microservice.requests.jobs import money_request_expiry_job
from transactions_microservice.requests.router import router as requests_router
from transactions_microservice.settings import TransactionsSettings
from transactions_microservice.state import TransactionsState
from transactions_microservice.statements.router import router as statements_router
from transactions_microservice.transfers.router import router as transfers_router

VERSION = "0.1.0"


async def start_clients(state: TransactionsState) -> None:
    """Start-up hook: the payment service's client, with this service's own account."""
    settings = state.settings
    state.top_ups = TopUpAllowanceClient(
        ServiceClient(
            settings.service_url("payment"),
            state.service_tokens,
            timeout=settings.http_timeout_seconds,
        )
    )


async def close_clients(state: TransactionsState) -> None:
    """Shut-down hook: close the HTTP connection pool."""
    await state.top_ups.aclose()


def create_app(settings: TransactionsSettings | None = None) -> FastAPI:
    """The transactions app; settings come from the environment at start-up unless given."""
    handlers = EventHandlers()

    async def configure_handlers(state: TransactionsState) -> None:
        handlers.configure(state.settings)

    return create_service_app(
        settings_cls=TransactionsSettings,
        settings=settings,
        state_cls=TransactionsState,
        schema=SCHEMA,
        title="MicroPay Transactions",
        description="The double-entry wallet ledger: balances, transfers, holds and history.",
        version=VERSION,
        tags=[
            {
                "name": "transactions",
                "description": "Balances, transfers, ledger history and statements.",
            },
        ],
        routers=[
            accounts_router,
            transfers_router,
            requests_router,
            invitations_router,
            # Before the ledger's `/transactions/{id}`, which would take "limits" for an id.
            limits_router,
            statements_router,
            ledger_router,
            holds_router,
            ledger_internal_router,
            inbound_router(handlers),
        ],
        on_startup=[configure_handlers, start_clients],
        on_shutdown=[close_clients],
        background_jobs=[
            outbox_relay_job,
            idempotency_purge_job,
            hold_expiry_job,
            money_request_expiry_job,
            invitation_expiry_job,
            ledger_check_job,
        ],
    )


app = create_app()
