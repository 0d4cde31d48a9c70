"""Fixtures of the migration tests: empty databases of their own on the test server."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from stack.postgres import PostgresServer, drop_database, ensure_database

_numbers = itertools.count(1)


@pytest.fixture
async def new_database(pg_server: PostgresServer) -> AsyncIterator[Callable[[], Awaitable[str]]]:
    """Create empty databases on demand (their admin URLs); all are dropped afterwards."""
    created: list[str] = []

    async def create() -> str:
        name = f"micropay_migration_{os.getpid()}_{next(_numbers)}"
        await ensure_database(pg_server, name, recreate=True)
        created.append(name)
        return pg_server.url_for(name)

    yield create
    for name in created:
        await drop_database(pg_server, name)
