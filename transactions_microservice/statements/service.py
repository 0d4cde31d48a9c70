"""Rules for statements: the period a statement may cover, and its parts in one snapshot."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import asdict
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from transactions_microservice.accounts.service import refuse_future
from transactions_microservice.statements import repository
from transactions_microservice.statements.exceptions import InvalidPeriod
from transactions_microservice.statements.formats import Closing, Opening, StatementPart
from transactions_microservice.statements.schemas import StatementLineRead

MAX_PERIOD = timedelta(days=366)
"""The longest period one statement covers: a year, leap day included."""

STALL_SECONDS = 60
"""How long a statement's transaction may wait on a client that stopped reading before the
database ends it: a stalled download must not hold a pooled connection and a snapshot for
ever."""


def check_period(start: datetime, end: datetime) -> None:
    """Refuse a period that is empty, reversed, longer than MAX_PERIOD or not yet over."""
    if start >= end:
        raise InvalidPeriod("`from` must be before `to`.")
    if end - start > MAX_PERIOD:
        raise InvalidPeriod(
            f"A statement covers at most {MAX_PERIOD.days} days.", max_days=MAX_PERIOD.days
        )
    refuse_future(end, "to")


async def statement(
    engine: AsyncEngine, user_id: str, currency: str, start: datetime, end: datetime
) -> AsyncIterator[StatementPart]:
    """The opening, the lines in batches, then the totals and the closing, all read on one
    snapshot (REPEATABLE READ, read only) so that opening + lines = closing. A user without a
    wallet in `currency` gets an empty statement at zero."""
    async with engine.connect() as connection:
        await connection.execution_options(
            isolation_level="REPEATABLE READ", postgresql_readonly=True
        )
        async with connection.begin():
            await repository.limit_idle(connection, STALL_SECONDS)
            wallet = await repository.wallet(connection, user_id, currency)
            opening = 0
            if wallet is not None:
                opening = await repository.balance_before(connection, wallet, start)
            yield Opening(currency, start, end, opening)
            total_in = total_out = 0
            closing = opening
            if wallet is not None:
                async for batch in repository.entries_between(connection, wallet, start, end):
                    lines = [StatementLineRead.model_validate(asdict(entry)) for entry in batch]
                    for line in lines:
                        if line.amount > 0:
                            total_in += line.amount
                        else:
                            total_out -= line.amount
                    # The ledger's own running balance, not our sum: a test of the one by the
                    # other (opening + lines = closing) means something.
                    closing = lines[-1].balance_after
                    yield lines
            yield Closing(total_in, total_out, closing)
