"""Balances at an instant and statements through the gateway: a card top-up, a transfer and a
refund, then the wallet as it was before them, and the period as JSON and as a CSV download."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime

import pytest

from tests.e2e.client import PROBLEM_JSON, Api

pytestmark = pytest.mark.timeout(120)


def instant(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def test_a_statement_of_a_top_up_a_transfer_and_a_refund(api: Api) -> None:
    ana, bob = await api.register("ana"), await api.register("bob")
    await api.balance_becomes(ana, 0)
    await api.balance_becomes(bob, 0)
    await asyncio.sleep(0.01)
    start = datetime.now(UTC)
    await asyncio.sleep(0.01)
    paid = await api.top_up(ana, 5000)
    assert paid.status_code == 201, paid.text
    await api.balance_becomes(ana, 5000)
    sent = await api.transfer(ana, bob.email, 1250, description="Theatre")
    assert sent.status_code == 201, sent.text
    refunded = await api.refund(ana, paid.json()["id"], 700)
    assert refunded.status_code == 201, refunded.text
    await api.balance_becomes(ana, 3050)
    await asyncio.sleep(0.01)
    end = datetime.now(UTC)
    period = {"currency": "USD", "from": instant(start), "to": instant(end)}

    then = await api.client.get(
        "/transactions/balance", params={"at": instant(start)}, headers=ana.auth
    )
    assert then.status_code == 200, then.text
    assert [(w["currency"], w["available"], w["balance"]) for w in then.json()["balances"]] == [
        ("USD", 0, 0)
    ]

    response = await api.client.get("/transactions/statement", params=period, headers=ana.auth)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [(line["type"], line["amount"]) for line in body["lines"]] == [
        ("top_up", 5000),
        ("transfer_out", -1250),
        ("refund", -700),
    ]
    assert body["lines"][1]["counterparty_email"] == bob.email
    assert body["lines"][1]["description"] == "Theatre"
    assert (body["opening_balance"], body["total_in"], body["total_out"]) == (0, 5000, 1950)
    assert body["closing_balance"] == 3050

    bobs = await api.client.get("/transactions/statement", params=period, headers=bob.auth)
    assert [(line["type"], line["counterparty_email"]) for line in bobs.json()["lines"]] == [
        ("transfer_in", ana.email)
    ]

    async with api.client.stream(
        "GET", "/transactions/statement", params={**period, "format": "csv"}, headers=ana.auth
    ) as download:
        assert download.status_code == 200
        # Streamed through nginx as the service writes it.
        assert download.headers["transfer-encoding"] == "chunked"
        assert download.headers["content-type"] == "text/csv; charset=utf-8"
        assert download.headers["content-disposition"].startswith(
            'attachment; filename="statement-USD-'
        )
        text = (await download.aread()).decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(row["type"], row["amount"], row["balance_after"]) for row in rows] == [
        ("opening_balance", "", "0.00"),
        ("top_up", "50.00", "50.00"),
        ("transfer_out", "-12.50", "37.50"),
        ("refund", "-7.00", "30.50"),
        ("total_in", "50.00", ""),
        ("total_out", "-19.50", ""),
        ("closing_balance", "", "30.50"),
    ]


async def test_statement_refusals_are_problems_through_the_gateway(api: Api) -> None:
    ana = await api.register("ana")
    for query, problem in (
        ({"currency": "USD", "from": "2026-03-02T00:00:00Z", "to": "2026-03-01T00:00:00Z"},
         "invalid_period"),
        ({"currency": "XYZ", "from": "2026-03-01T00:00:00Z", "to": "2026-03-02T00:00:00Z"},
         "validation_error"),
        ({"currency": "USD", "from": "2026-03-01T00:00:00Z", "to": "2999-01-01T00:00:00Z"},
         "invalid_period"),
    ):  # fmt: skip
        response = await api.client.get("/transactions/statement", params=query, headers=ana.auth)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == PROBLEM_JSON
        assert response.json()["type"] == problem
    future = await api.client.get(
        "/transactions/balance", params={"at": "2999-01-01T00:00:00Z"}, headers=ana.auth
    )
    assert future.status_code == 422
    assert future.json()["type"] == "instant_in_future"
    unsigned = await api.client.get(
        "/transactions/statement",
        params={"currency": "USD", "from": "2026-03-01T00:00:00Z", "to": "2026-03-02T00:00:00Z"},
    )
    assert unsigned.status_code == 401
