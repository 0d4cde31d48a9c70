"""FastAPI dependencies of the transactions service."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from transactions_microservice.limits.top_ups import TopUpAllowanceClient
from transactions_microservice.settings import TransactionsSettings
from transactions_microservice.state import TransactionsState

SettingsDep = Annotated[
    TransactionsSettings, Depends(TransactionsState.provide(lambda s: s.settings))
]
TopUpAllowanceClientDep = Annotated[
    TopUpAllowanceClient, Depends(TransactionsState.provide(lambda s: s.top_ups))
]
SessionmakerDep = Annotated[
    async_sessionmaker[AsyncSession], Depends(TransactionsState.provide(lambda s: s.sessionmaker))
]
"""For an endpoint that opens its own transaction only on one of its paths."""
EngineDep = Annotated[AsyncEngine, Depends(TransactionsState.provide(lambda s: s.engine))]
"""The app's engine, for a read that outlives the endpoint (a streamed statement opens its own
connection and transaction in the response body)."""
