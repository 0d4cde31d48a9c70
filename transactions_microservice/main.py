"""MicroPay Transactions: the FastAPI application (`uvicorn transactions_microservice.main:app`)."""

from __future__ import annotations

from micropay_common.app import create_service_app
from micropay_common.idempotency import idempotency_purge_job
from micropay_common.outbox import outbox_relay_job
from transactions_microservice.settings import TransactionsSettings

VERSION = "0.1.0"

app = create_service_app(
    settings_cls=TransactionsSettings,
    schema="transactions",
    title="MicroPay Transactions",
    description="The double-entry wallet ledger: balances, transfers, holds and history.",
    version=VERSION,
    tags=[
        {"name": "transactions", "description": "Balances, transfers and ledger history."},
    ],
    routers=[],
    background_jobs=[outbox_relay_job, idempotency_purge_job],
)
