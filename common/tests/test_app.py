"""The service skeleton: problem+json errors, request ids, JSON logs, health, metrics, sessions."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import text

from micropay_common.db import SessionDep
from micropay_common.errors import Conflict, FastJSONResponse
from micropay_common.settings import ServiceSettings
from micropay_testing.apps import app_with, serve
from micropay_testing.database import TestDatabase
from micropay_testing.processes import free_port

SCRATCH = "transactions.app_scratch"


class Transfer(BaseModel):
    amount: int = Field(gt=0)
    currency: str = Field(pattern=r"^[A-Z]{3}$")


class InsufficientFunds(Conflict):
    type = "insufficient_funds"
    title = "Insufficient funds"


def build_app(settings: ServiceSettings) -> FastAPI:
    router = APIRouter()

    @router.post("/transfers", status_code=201)
    async def create(body: Transfer) -> dict[str, Any]:
        return body.model_dump()

    @router.get("/broke")
    async def broke() -> None:
        raise InsufficientFunds("Available 5 USD, needed 10 USD.", available=5)

    @router.get("/unicode")
    async def unicode() -> None:
        raise InsufficientFunds("Solde: 5 € — 残高不足", nested={"list": [1, None, True, "ü"]})

    @router.get("/check")
    async def check(ok: bool = True) -> None:
        if not ok:
            raise InsufficientFunds("refused")

    @router.get("/crash")
    async def crash() -> None:
        raise RuntimeError("secret internals")

    @router.post("/rows/{value}")
    async def insert(value: int, session: SessionDep) -> dict[str, int]:
        await session.execute(text(f"INSERT INTO {SCRATCH} (value) VALUES (:v)"), {"v": value})
        if value < 0:
            raise InsufficientFunds("negative")
        return {"value": value}

    @router.post("/duplicate-at-commit/{value}")
    async def duplicate(value: int, session: SessionDep) -> dict[str, str]:
        # The deferred unique constraint only fails at COMMIT, after the endpoint returned.
        statement = text(f"INSERT INTO {SCRATCH} (value) VALUES (:v)")
        await session.execute(statement, {"v": value})
        await session.execute(statement, {"v": value})
        return {"status": "looks fine"}

    return app_with(settings, "transactions", [router], quiet_paths=["/check"])


@pytest.fixture(scope="module")
async def scratch(database: TestDatabase) -> AsyncIterator[None]:
    conn = await asyncpg.connect(database.admin_url.replace("postgresql://", "postgres://", 1))
    await conn.execute(
        f"CREATE TABLE {SCRATCH} (value int, "
        "CONSTRAINT app_scratch_unique UNIQUE (value) DEFERRABLE INITIALLY DEFERRED);"
        f"GRANT SELECT, INSERT ON {SCRATCH} TO transactions_service"
    )
    yield
    await conn.execute(f"DROP TABLE {SCRATCH}")
    await conn.close()


@pytest.fixture(scope="module")
def app(service_settings, scratch) -> FastAPI:
    return build_app(service_settings("transactions"))


async def scratch_values(database: TestDatabase) -> list[int]:
    conn = await asyncpg.connect(database.admin_url.replace("postgresql://", "postgres://", 1))
    try:
        return [row[0] for row in await conn.fetch(f"SELECT value FROM {SCRATCH} ORDER BY 1")]
    finally:
        await conn.close()


async def test_validation_errors_are_422_problem_json(app):
    async with serve(app) as client:
        response = await client.post("/transfers", json={"amount": 1.5, "currency": "usd"})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == "validation_error"
    assert body["status"] == 422
    assert {tuple(error["loc"]) for error in body["errors"]} == {
        ("body", "amount"),
        ("body", "currency"),
    }
    assert body["request_id"] == response.headers["x-request-id"]


async def test_malformed_json_is_422_problem_json(app):
    async with serve(app) as client:
        response = await client.post(
            "/transfers", content=b"{not json", headers={"content-type": "application/json"}
        )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


async def test_domain_errors_carry_status_type_and_extras(app):
    async with serve(app) as client:
        response = await client.get("/broke")
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() | {"request_id": "x"} == {
        "type": "insufficient_funds",
        "title": "Insufficient funds",
        "status": 409,
        "detail": "Available 5 USD, needed 10 USD.",
        "instance": "/broke",
        "available": 5,
        "request_id": "x",
    }


async def test_unknown_route_and_method_are_problem_json(app):
    async with serve(app) as client:
        missing = await client.get("/nowhere")
        wrong_method = await client.delete("/transfers")
    assert (missing.status_code, missing.json()["type"]) == (404, "not_found")
    assert (wrong_method.status_code, wrong_method.json()["type"]) == (405, "method_not_allowed")
    assert wrong_method.headers["content-type"] == "application/problem+json"


async def test_unexpected_errors_are_500_problem_json_without_internals(app):
    async with serve(app) as client:
        response = await client.get("/crash")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "internal_error"
    assert "secret internals" not in response.text


async def test_request_id_is_accepted_returned_and_logged(service_settings, scratch, capsys):
    app = build_app(service_settings("transactions", log_level="INFO"))
    async with serve(app) as client:
        capsys.readouterr()
        given = await client.get("/broke", headers={"X-Request-ID": "req-123"})
        generated = await client.get("/broke")
        hostile = await client.get("/broke", headers={"X-Request-ID": "a b\tc" + "x" * 200})
    assert given.headers["x-request-id"] == "req-123"
    assert given.json()["request_id"] == "req-123"
    assert len(generated.headers["x-request-id"]) == 32
    assert hostile.headers["x-request-id"] != "a b\tc" + "x" * 200
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    access = [line for line in lines if line["logger"] == "micropay.access"]
    assert {line["request_id"] for line in access} >= {"req-123", generated.headers["x-request-id"]}
    assert all(line["service"] == "transactions" for line in lines)


async def test_health_and_metrics(app):
    async with serve(app) as client:
        live = await client.get("/health/live")
        ready = await client.get("/health/ready")
        await client.get("/broke")
        metrics = await client.get("/metrics")
    assert (live.status_code, live.json()) == (200, {"status": "ok"})
    assert ready.status_code == 200
    assert ready.json()["database"] == "ok"
    assert metrics.status_code == 200
    assert 'http_requests_total{handler="/broke",method="GET",status="4xx"}' in metrics.text


async def test_session_commits_on_success_and_rolls_back_on_error(app, database):
    async with serve(app) as client:
        ok = await client.post("/rows/7")
        refused = await client.post("/rows/-7")
    assert ok.status_code == 200
    assert refused.status_code == 409
    values = await scratch_values(database)
    assert 7 in values
    assert -7 not in values


async def test_a_failed_commit_is_never_reported_as_success(app, database):
    async with serve(app) as client:
        response = await client.post("/duplicate-at-commit/42")
    assert response.status_code >= 400
    assert response.headers["content-type"] == "application/problem+json"
    assert 42 not in await scratch_values(database)


async def test_database_down_gives_503_problem_json(service_settings, scratch):
    unreachable = f"postgresql://transactions_service@127.0.0.1:{free_port()}/micropay"
    app = build_app(service_settings("transactions", database_url=unreachable))
    async with serve(app) as client:
        ready = await client.get("/health/ready")
        write = await client.post("/rows/1")
        live = await client.get("/health/live")
    assert ready.status_code == 503
    assert ready.json()["type"] == "service_unavailable"
    assert write.status_code == 503
    assert write.headers["content-type"] == "application/problem+json"
    assert "retry-after" in write.headers
    assert live.status_code == 200


def test_the_fast_json_response_writes_the_bytes_starlette_writes():
    content = {
        "détail": 'Solde: 5 € — 残高不足 \u2028 "quoted" \\ back',
        "amount": 9_223_372_036_854_775_807,
        "items": [{"a": None, "b": True, "c": False}, [], {}],
        "emoji": "💸",
    }
    assert FastJSONResponse(content).body == JSONResponse(content).body


async def test_problem_answers_keep_their_media_type_and_non_ascii_text(app):
    async with serve(app) as client:
        response = await client.get("/unicode")
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["detail"] == "Solde: 5 € — 残高不足"
    assert body["nested"] == {"list": [1, None, True, "ü"]}
    # Written as UTF-8, not escaped, and compact: as JSONResponse writes it.
    assert "残高不足".encode() in response.content
    assert b'": ' not in response.content


async def test_metrics_name_the_route_template_and_skip_health_and_quiet_successes(app):
    async with serve(app) as client:
        await client.post("/rows/5")
        await client.get("/nowhere/at/all")
        await client.get("/health/live")
        await client.get("/check")
        await client.get("/check", params={"ok": "false"})
        metrics = (await client.get("/metrics")).text
    # The app is shared by the module's tests, so the counts include theirs.
    assert 'http_requests_total{handler="/rows/{value}",method="POST",status="2xx"}' in metrics
    assert 'http_requests_total{handler="none",method="GET",status="4xx"}' in metrics
    assert 'http_request_duration_seconds_count{handler="/rows/{value}",method="POST"}' in metrics
    assert 'http_request_size_bytes_count{handler="/rows/{value}"}' in metrics
    assert "/health/live" not in metrics
    # A quiet path: its refusals are counted, its successes are not.
    assert 'http_requests_total{handler="/check",method="GET",status="4xx"}' in metrics
    assert 'http_requests_total{handler="/check",method="GET",status="2xx"}' not in metrics


async def test_quiet_paths_log_their_refusals_but_not_their_successes(
    service_settings, scratch, capsys
):
    app = build_app(service_settings("transactions", log_level="INFO"))
    async with serve(app) as client:
        capsys.readouterr()
        admitted = await client.get("/check")
        refused = await client.get("/check", params={"ok": "false"})
        logged = await client.get("/broke")
    assert (admitted.status_code, refused.status_code, logged.status_code) == (200, 409, 409)
    assert admitted.headers["x-request-id"]
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    access = [
        (line["path"], line["status"]) for line in lines if line["logger"] == "micropay.access"
    ]
    assert ("/check", 409) in access
    assert ("/broke", 409) in access
    assert ("/check", 200) not in access
