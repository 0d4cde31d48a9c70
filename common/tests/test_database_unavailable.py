"""A database that is shutting down, restarting or gone is a 503 problem, never a 500."""

from __future__ import annotations

import asyncpg
import pytest
from fastapi import APIRouter
from sqlalchemy.exc import DBAPIError

from micropay_testing.apps import app_with, serve


class _DriverError(Exception):
    """What SQLAlchemy's asyncpg adapter wraps: the server's SQLSTATE as `sqlstate`."""

    def __init__(self, message: str, sqlstate: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def _raising(exc: Exception) -> APIRouter:
    router = APIRouter()

    @router.get("/fail")
    async def fail() -> None:
        raise exc

    return router


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (asyncpg.exceptions.CannotConnectNowError("the database system is shutting down"), 503),
        (asyncpg.exceptions.AdminShutdownError("terminating connection"), 503),
        (asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"), 503),
        (DBAPIError("SELECT 1", None, _DriverError("shutting down", "57P03")), 503),
        (DBAPIError("SELECT 1", None, _DriverError("connection failure", "08006")), 503),
        # Not the database's availability: a bug, reported as such.
        (DBAPIError("SELECT 1", None, _DriverError("out of int64 range", "22003")), 500),
    ],
)
async def test_unreachable_database_errors_are_503(service_settings, error, status):
    app = app_with(service_settings("transactions"), "transactions", [_raising(error)])
    async with serve(app) as client:
        response = await client.get("/fail")
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    if status == 503:
        assert response.json()["type"] == "service_unavailable"
        assert response.headers["retry-after"] == "2"
