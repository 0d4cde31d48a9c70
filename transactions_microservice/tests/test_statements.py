"""Balances at an instant and statements: read from the ledger's entries, on one snapshot,
streamed; opening + lines = closing whatever the period."""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import json
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from micropay_common.db import Statement
from micropay_testing.apps import serve_http
from transactions_microservice.accounts import repository as accounts_repository
from transactions_microservice.main import create_app
from transactions_microservice.statements.repository import BALANCE_BEFORE, BATCH
from transactions_microservice.tests.helpers import Member, all_entries

PROBLEM_JSON = "application/problem+json"


def instant(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


async def moment() -> datetime:
    """An instant strictly between what was posted before and what is posted after."""
    await asyncio.sleep(0.002)
    now = datetime.now(UTC)
    await asyncio.sleep(0.002)
    return now


async def balances_at(client: httpx.AsyncClient, member: Member, at: datetime) -> dict[str, Any]:
    response = await client.get(
        "/transactions/balance", params={"at": instant(at)}, headers=member.headers
    )
    assert response.status_code == 200, response.text
    return {wallet.pop("currency"): wallet for wallet in response.json()["balances"]}


async def statement(
    client: httpx.AsyncClient,
    member: Member,
    start: datetime,
    end: datetime,
    currency: str = "USD",
    **extra: str,
) -> httpx.Response:
    return await client.get(
        "/transactions/statement",
        params={"currency": currency, "from": instant(start), "to": instant(end), **extra},
        headers=member.headers,
    )


async def statement_json(
    client: httpx.AsyncClient, member: Member, start: datetime, end: datetime
) -> dict[str, Any]:
    response = await statement(client, member, start, end)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return dict(response.json())


async def send(client, sender: Member, recipient: Member, amount: int, description: str) -> None:
    response = await client.post(
        "/transactions/transfers",
        json={
            "to_email": recipient.email,
            "amount": amount,
            "currency": "USD",
            "description": description,
        },
        headers={**sender.headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert response.status_code == 201, response.text


async def refund(deliver, member: Member, amount: int) -> None:
    """A refund made at Stripe (no hold): the wallet is debited for it."""
    response = await deliver(
        "payment.refunded",
        {
            "payment_id": f"pay_{uuid.uuid4().hex[:12]}",
            "refund_id": f"re_{uuid.uuid4().hex[:12]}",
            "user_id": member.id,
            "amount": amount,
            "currency": "USD",
            "hold_id": None,
        },
    )
    assert response.json() == {"status": "applied"}, response.text


def dispute(member: Member, amount: int) -> dict[str, Any]:
    return {
        "payment_id": f"pay_{uuid.uuid4().hex[:12]}",
        "dispute_id": str(uuid.uuid4()),
        "user_id": member.id,
        "amount": amount,
        "currency": "USD",
    }


async def test_an_instant_before_the_first_line_gives_zero_balances(
    client, register, top_up, service_headers
):
    member = await register()
    before = await moment()
    await top_up(member, 1_000)
    await top_up(member, 500, "EUR")
    after = await moment()

    # Every wallet the user has now is listed, at zero before its first line.
    assert await balances_at(client, member, before) == {
        "EUR": {"available": 0, "balance": 0, "held": 0, "pending": 0, "owed": 0},
        "USD": {"available": 0, "balance": 0, "held": 0, "pending": 0, "owed": 0},
    }
    then = await balances_at(client, member, after)
    assert then["USD"]["balance"] == 1_000
    assert then["EUR"]["balance"] == 500
    long_ago = await balances_at(client, member, datetime(2000, 1, 1, tzinfo=UTC))
    assert {wallet["balance"] for wallet in long_ago.values()} == {0}


async def test_holds_and_debts_are_as_they_were_at_the_instant(
    client, register, top_up, deliver, service_headers
):
    member = await register()
    await top_up(member, 1_000)
    placed = await client.post(
        "/internal/holds",
        json={
            "user_id": member.id,
            "amount": 300,
            "currency": "USD",
            "reference": f"refund:{uuid.uuid4()}",
        },
        headers=service_headers,
    )
    assert placed.status_code == 201, placed.text
    holding = await moment()
    captured = await client.post(
        f"/internal/holds/{placed.json()['id']}/capture", headers=service_headers
    )
    assert captured.status_code == 200, captured.text
    refunded = await moment()
    withdrawn = await deliver("payment.dispute_funds_withdrawn", dispute(member, 1_000))
    assert withdrawn.json() == {"status": "applied"}
    owing = await moment()

    assert (await balances_at(client, member, holding))["USD"] == {
        "available": 700,
        "balance": 1_000,
        "held": 300,
        "pending": 0,
        "owed": 0,
    }
    assert (await balances_at(client, member, refunded))["USD"] == {
        "available": 700,
        "balance": 700,
        "held": 0,
        "pending": 0,
        "owed": 0,
    }
    assert (await balances_at(client, member, owing))["USD"] == {
        "available": 0,
        "balance": 0,
        "held": 0,
        "pending": 0,
        "owed": 300,
    }
    # The present read through `at` agrees with the stored balances.
    now = (await client.get("/transactions/balance", headers=member.headers)).json()
    assert {w["currency"]: w for w in now["balances"]}["USD"]["owed"] == 300


@pytest.mark.parametrize(
    ("at", "problem"),
    [
        ((datetime.now(UTC) + timedelta(days=1)).isoformat(), "instant_in_future"),
        ("2026-01-01T00:00:00", "validation_error"),
        ("yesterday", "validation_error"),
        # Valid RFC 3339, but before the first instant a datetime holds once in UTC.
        ("0001-01-01T00:00:00+05:00", "validation_error"),
    ],
)
async def test_an_instant_in_the_future_or_without_offset_is_422(client, register, at, problem):
    member = await register()
    response = await client.get("/transactions/balance", params={"at": at}, headers=member.headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["type"] == problem


async def test_a_statement_across_a_top_up_a_transfer_a_refund_and_a_dispute(
    client, register, top_up, deliver
):
    member, friend = await register(), await register()
    await top_up(member, 5_000)
    start = await moment()
    await top_up(member, 10_000)
    await send(client, member, friend, 2_500, "Dinner")
    await send(client, friend, member, 700, "=Half back")
    await refund(deliver, member, 1_000)
    disputed = dispute(member, 2_000)
    assert (await deliver("payment.dispute_funds_withdrawn", disputed)).status_code == 200
    assert (await deliver("payment.dispute_funds_reinstated", disputed)).status_code == 200
    end = await moment()
    await top_up(member, 99)  # after the period

    body = await statement_json(client, member, start, end)

    assert body["currency"] == "USD"
    assert body["opening_balance"] == 5_000
    lines = body["lines"]
    assert [(line["type"], line["amount"]) for line in lines] == [
        ("top_up", 10_000),
        ("transfer_out", -2_500),
        ("transfer_in", 700),
        ("refund", -1_000),
        ("dispute_withdrawal", -2_000),
        ("dispute_reinstatement", 2_000),
    ]
    assert lines[1]["description"] == "Dinner"
    assert lines[1]["counterparty_email"] == friend.email.lower()
    assert lines[2]["counterparty_email"] == friend.email.lower()
    running = body["opening_balance"]
    for line in lines:
        running += line["amount"]
        assert line["balance_after"] == running
    assert body["total_in"] == 12_700
    assert body["total_out"] == 5_500
    assert body["closing_balance"] == 12_200
    assert body["closing_balance"] == (await balances_at(client, member, end))["USD"]["balance"]
    # The same lines as the history shows, in posting order.
    history = [
        line["id"]
        for line in reversed(await all_entries(client, member))
        if start <= datetime.fromisoformat(line["created_at"]) < end
    ]
    assert [line["id"] for line in lines] == history


async def test_the_csv_is_what_a_spreadsheet_opens(client, register, top_up):
    member, friend = await register(), await register()
    start = await moment()
    await top_up(member, 123_456)
    await send(client, member, friend, 1_005, "=SUM(A1:A9)")
    await top_up(member, 1_500, "JPY")
    end = await moment()

    response = await statement(client, member, start, end, format="csv")

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    first, last = start.astimezone(UTC), end.astimezone(UTC)
    assert response.headers["content-disposition"] == (
        f'attachment; filename="statement-USD-{first:%Y%m%d}-{last:%Y%m%d}.csv"'
    )
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert list(rows[0]) == [
        "date",
        "type",
        "description",
        "counterparty",
        "amount",
        "balance_after",
        "currency",
        "reference",
    ]
    assert [(row["type"], row["amount"], row["balance_after"]) for row in rows] == [
        ("opening_balance", "", "0.00"),
        ("top_up", "1234.56", "1234.56"),
        ("transfer_out", "-10.05", "1224.51"),
        ("total_in", "1234.56", ""),
        ("total_out", "-10.05", ""),
        ("closing_balance", "", "1224.51"),
    ]
    # A description a spreadsheet would run as a formula is kept as text.
    assert rows[2]["description"] == "'=SUM(A1:A9)"
    assert rows[2]["counterparty"] == friend.email.lower()
    assert {row["currency"] for row in rows} == {"USD"}
    datetime.fromisoformat(rows[1]["date"])

    yen = await statement(client, member, start, end, currency="jpy", format="csv")
    yen_rows = list(csv.DictReader(io.StringIO(yen.text)))
    assert [(row["type"], row["amount"]) for row in yen_rows][1] == ("top_up", "1500")
    assert yen_rows[-1]["balance_after"] == "1500"


@dataclass
class VariedLedger:
    """A wallet with a history of every kind of line, the instants between its postings, and
    the instants of its entries (a period may start or end exactly on one)."""

    member: Member
    between: list[datetime]
    stamps: list[datetime]


@pytest.fixture(scope="module")
async def varied(client, register, top_up, deliver) -> VariedLedger:
    member, friend = await register(), await register()
    rng = random.Random(19)
    between = [await moment()]
    await top_up(member, 20_000)
    for _ in range(24):
        match rng.choice(("top_up", "send", "receive", "refund", "dispute")):
            case "top_up":
                await top_up(member, rng.randint(1, 3_000))
            case "send":
                await send(client, member, friend, rng.randint(1, 500), "out")
            case "receive":
                await top_up(friend, 1_000)
                await send(client, friend, member, rng.randint(1, 1_000), "in")
            case "refund":
                await refund(deliver, member, rng.randint(1, 200))
            case "dispute":
                withdrawn = dispute(member, rng.randint(1, 200))
                assert (await deliver("payment.dispute_funds_withdrawn", withdrawn)).is_success
        between.append(await moment())
    stamps = [
        datetime.fromisoformat(line["created_at"]) for line in await all_entries(client, member)
    ]
    return VariedLedger(member, between, stamps)


def instants(ledger: VariedLedger) -> st.SearchStrategy[datetime]:
    """Any instant around the history, between two postings, or exactly on an entry."""
    return st.one_of(
        st.datetimes(
            min_value=ledger.between[0].replace(tzinfo=None) - timedelta(seconds=1),
            max_value=ledger.between[-1].replace(tzinfo=None),
            timezones=st.just(UTC),
        ),
        st.sampled_from(ledger.between),
        st.sampled_from(ledger.stamps),
    )


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
async def test_opening_plus_lines_is_closing_for_any_period(client, varied, data):
    start = data.draw(instants(varied), label="from")
    end = data.draw(instants(varied).filter(lambda end: end > start), label="to")

    body = await statement_json(client, varied.member, start, end)

    amounts = [line["amount"] for line in body["lines"]]
    assert body["opening_balance"] + sum(amounts) == body["closing_balance"]
    assert body["total_in"] == sum(amount for amount in amounts if amount > 0)
    assert body["total_out"] == -sum(amount for amount in amounts if amount < 0)
    at_start = await balances_at(client, varied.member, start)
    at_end = await balances_at(client, varied.member, end)
    assert body["opening_balance"] == at_start["USD"]["balance"]
    assert body["closing_balance"] == at_end["USD"]["balance"]
    # Exactly the entries of [from, to), as the history has them.
    assert len(body["lines"]) == sum(start <= stamp < end for stamp in varied.stamps)


async def test_adjacent_periods_chain(client, varied):
    whole = await statement_json(client, varied.member, varied.between[0], varied.between[-1])
    parts = [
        await statement_json(client, varied.member, start, end)
        for start, end in itertools.pairwise(varied.between)
    ]
    assert [p["opening_balance"] for p in parts[1:]] == [p["closing_balance"] for p in parts[:-1]]
    assert [line["id"] for p in parts for line in p["lines"]] == [
        line["id"] for line in whole["lines"]
    ]
    assert whole["opening_balance"] == 0
    assert len(whole["lines"]) == len(varied.stamps)


SEED = """
WITH source AS (
    INSERT INTO transactions.accounts (kind, system_code, currency, balance)
    VALUES ('system', 'statement_seed_' || $3, 'USD', -$2::bigint) RETURNING id
), t AS (
    INSERT INTO transactions.ledger_transactions (id, type, reference, created_at)
    SELECT gen_random_uuid(), 'top_up', 'statement-seed-' || $3 || '-' || g,
           now() - interval '1 hour' + make_interval(secs => g / 1000.0)
    FROM generate_series(1, $2::int) AS g
    RETURNING id, created_at
), numbered AS (
    SELECT id, created_at, row_number() OVER (ORDER BY created_at) AS n FROM t
), written AS (
    INSERT INTO transactions.entries
        (transaction_id, account_id, type, amount, currency, balance_after, created_at)
    SELECT numbered.id, x.account_id, 'top_up', x.sign, 'USD', x.sign * numbered.n,
           numbered.created_at
    FROM numbered CROSS JOIN (
        SELECT $1::bigint AS account_id, 1 AS sign UNION ALL SELECT id, -1 FROM source
    ) AS x
    ORDER BY numbered.n, x.sign DESC
)
UPDATE transactions.accounts SET balance = balance + $2 WHERE id = $1
"""


async def test_a_long_statement_streams_in_batches(
    admin, tx_settings, register, make_user, deliver
):
    member = await register()
    wallet = await admin.fetchval(
        "SELECT id FROM transactions.accounts WHERE user_id = $1 AND currency = 'USD'", member.id
    )
    count = BATCH * 2 + 37
    await admin.execute(SEED, wallet, count, uuid.uuid4().hex[:12])
    start = datetime.now(UTC) - timedelta(hours=2)
    end = datetime.now(UTC)

    async with (
        serve_http(create_app(tx_settings)) as url,
        httpx.AsyncClient(base_url=url, headers=member.headers) as http,
    ):
        params = {"currency": "USD", "from": instant(start), "to": instant(end)}
        for format_ in ("json", "csv"):
            async with http.stream(
                "GET", "/transactions/statement", params={**params, "format": format_}
            ) as response:
                assert response.status_code == 200
                # Sent as it is read: chunked, with no length known in advance.
                assert response.headers["transfer-encoding"] == "chunked"
                assert "content-length" not in response.headers
                body = b"".join([chunk async for chunk in response.aiter_bytes()])
            if format_ == "json":
                document = json.loads(body)
                assert len(document["lines"]) == count
                assert document["opening_balance"] == 0
                assert document["closing_balance"] == count
                assert document["total_in"] == count
            else:
                rows = list(csv.reader(io.StringIO(body.decode())))
                assert len(rows) == 1 + 1 + count + 3
                assert rows[-1][5] == f"{count // 100}.{count % 100:02d}"


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ({"from": "2026-03-01T00:00:00Z", "to": "2026-03-01T00:00:00Z"}, "invalid_period"),
        ({"from": "2026-03-02T00:00:00Z", "to": "2026-03-01T00:00:00Z"}, "invalid_period"),
        ({"from": "2024-01-01T00:00:00Z", "to": "2025-01-02T00:00:01Z"}, "invalid_period"),
        ({"from": "2026-03-01T00:00:00Z", "to": "2999-01-01T00:00:00Z"}, "invalid_period"),
        ({"from": "2026-03-01T00:00:00Z", "to": "2026-03-02T00:00:00"}, "validation_error"),
        ({"from": "0001-01-01T00:00:00+05:00", "to": "0001-06-01T00:00:00Z"}, "validation_error"),
        ({"currency": "XYZ"}, "validation_error"),
        ({"currency": None}, "validation_error"),
        ({"format": "pdf"}, "validation_error"),
    ],
)
async def test_invalid_statement_queries_are_422(client, register, query, problem):
    member = await register()
    params = {"currency": "USD", "from": "2026-03-01T00:00:00Z", "to": "2026-03-31T00:00:00Z"}
    params.update(query)
    response = await client.get(
        "/transactions/statement",
        params={k: v for k, v in params.items() if v is not None},
        headers=member.headers,
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["type"] == problem


async def test_a_period_ending_in_the_future_is_instant_in_future(client, register):
    member = await register()
    start = datetime.now(UTC) - timedelta(days=1)
    response = await statement(client, member, start, start + timedelta(days=2))
    assert response.status_code == 422
    assert response.json()["type"] == "instant_in_future"


async def test_instants_in_any_offset_are_the_same_instant(client, register, top_up):
    member = await register()
    await top_up(member, 1_000)
    end = datetime.now(UTC)
    start = end - timedelta(days=1)
    east = timezone(timedelta(hours=14))
    utc = await statement(client, member, start, end, format="csv")
    shifted = await client.get(
        "/transactions/statement",
        params={
            "currency": "USD",
            "from": start.astimezone(east).isoformat(),
            "to": end.astimezone(east).isoformat(),
            "format": "csv",
        },
        headers=member.headers,
    )
    assert shifted.status_code == 200, shifted.text
    assert shifted.text == utc.text
    # Named by the period's UTC days, whatever offset it was asked in.
    assert shifted.headers["content-disposition"] == utc.headers["content-disposition"]


async def test_a_currency_without_a_wallet_is_an_empty_statement(client, register):
    member = await register()
    end = datetime.now(UTC)
    body = await statement_json(client, member, end - timedelta(days=30), end)
    eur = await statement(client, member, end - timedelta(days=30), end, currency="EUR")
    assert body["lines"] == []
    assert eur.json() == {
        "currency": "EUR",
        "from": instant(end - timedelta(days=30)).replace("+00:00", "Z"),
        "to": instant(end).replace("+00:00", "Z"),
        "opening_balance": 0,
        "lines": [],
        "total_in": 0,
        "total_out": 0,
        "closing_balance": 0,
    }


async def test_a_statement_needs_a_token(client):
    response = await client.get(
        "/transactions/statement",
        params={"currency": "USD", "from": "2026-03-01T00:00:00Z", "to": "2026-03-02T00:00:00Z"},
    )
    assert response.status_code == 401


def plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(node for child in plan.get("Plans", []) for node in plan_nodes(child))]


async def test_the_opening_balance_is_one_probe_whatever_the_depth(admin, register):
    member = await register()
    wallet = await admin.fetchval(
        "SELECT id FROM transactions.accounts WHERE user_id = $1 AND currency = 'USD'", member.id
    )
    await admin.execute(SEED, wallet, 3_000, uuid.uuid4().hex[:12])
    await admin.execute("ANALYZE transactions.entries")
    start = datetime.now(UTC)
    opening = Statement.of(BALANCE_BEFORE)
    balances = Statement.of(accounts_repository.BALANCES_AT)

    for sql, arguments in (
        (opening.sql, opening.arguments({"account_id": wallet, "start": start})),
        (balances.sql, balances.arguments({"user_id": member.id, "at": start})),
    ):
        plan = json.loads(await admin.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *arguments))
        nodes = plan_nodes(plan[0]["Plan"])
        reads = [n for n in nodes if n.get("Relation Name") == "entries"]
        # The last entry before the instant, straight off the history index: one row read of
        # the 3,000 before it, no scan of the history.
        assert reads
        assert all(n.get("Index Name") == "entries_account_history_idx" for n in reads)
        assert all(n["Actual Rows"] <= 1 for n in reads)
        assert all(n.get("Rows Removed by Filter", 0) == 0 for n in reads)
    assert (
        await admin.fetchval(
            opening.sql, *opening.arguments({"account_id": wallet, "start": start})
        )
        == 3_000
    )
