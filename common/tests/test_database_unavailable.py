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


def _connect_to_missing_socket() -> APIRouter:
    router = APIRouter()

    @router.get("/connect")
    async def connect() -> None:
        # Where PostgreSQL's Unix socket would be while it restarts: no such file.
        await asyncpg.connect(host="/nonexistent-micropay-socket-dir", user="x", database="x")

    @router.get("/file")
    async def open_file() -> None:
        # Our own missing file is a bug, not an outage.
        raise FileNotFoundError(2, "No such file or directory", "/nonexistent/template.txt")

    return router


async def test_a_missing_database_socket_is_503_and_any_other_missing_file_500(service_settings):
    app = app_with(service_settings("transactions"), "transactions", [_connect_to_missing_socket()])
    async with serve(app) as client:
        outage = await client.get("/connect")
        bug = await client.get("/file")
    assert outage.status_code == 503, outage.text
    assert outage.json()["type"] == "service_unavailable"
    assert bug.status_code == 500
    assert bug.json()["type"] == "internal_error"
