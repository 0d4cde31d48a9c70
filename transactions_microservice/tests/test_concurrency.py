"""Hundreds of concurrent transfers over real HTTP: no lost update, no overdraft, no deadlock,
no double apply on retry."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx

from micropay_common.events import PaymentSucceeded, UserRegistered
from micropay_testing.apps import serve_http
from micropay_testing.events import event_envelope
from micropay_testing.http import every_item
from transactions_microservice.main import create_app
from transactions_microservice.tests.helpers import Member

USERS = 10
FUNDING = 1_000
TRANSFERS = 300
REPEATS = 60
"""Transfers sent a second time with the same Idempotency-Key and body, at the same moment."""


@dataclass
class Attempt:
    """One transfer request as the client sends it."""

    sender: Member
    recipient: Member
    amount: int
    key: str

    @property
    def body(self) -> dict[str, Any]:
        return {"to_email": self.recipient.email, "amount": self.amount, "currency": "USD"}


async def send(clients: dict[str, httpx.AsyncClient], attempt: Attempt) -> httpx.Response:
    """POST the transfer; a key still in use by its twin is retried as a client would."""
    while True:
        response = await clients[attempt.sender.id].post(
            "/transactions/transfers",
            json=attempt.body,
            headers={**attempt.sender.headers, "Idempotency-Key": attempt.key},
        )
        if response.status_code == 409 and response.json()["type"] == "idempotency_key_in_use":
            await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
            continue
        return response


async def test_concurrent_transfers_conserve_money_and_apply_once(
    tx_settings, make_user, service_headers, producer_headers
):
    seed = int(os.environ.get("TRANSFER_TEST_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    members = [Member(make_user()) for _ in range(USERS)]

    async with serve_http(create_app(tx_settings)) as url, contextlib.AsyncExitStack() as stack:
        # A client per sender with a connection per request: every transfer is in flight at
        # once and none waits in a client's queue (which httpx scans in quadratic time).
        clients = {
            member.id: await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=url, limits=httpx.Limits(max_connections=None), timeout=60
                )
            )
            for member in members
        }
        http = clients[members[0].id]
        for member in members:
            for event in (
                event_envelope(UserRegistered(user_id=member.id, email=member.email)),
                event_envelope(
                    PaymentSucceeded(
                        payment_id=f"pay_{uuid.uuid4().hex}",
                        user_id=member.id,
                        amount=FUNDING,
                        currency="USD",
                    )
                ),
            ):
                headers = producer_headers(event["type"])
                response = await http.post("/internal/events", json=event, headers=headers)
                assert response.status_code == 200, response.text

        # Amounts up to half a starting balance: the wallets drain unevenly and many overdraw.
        attempts = []
        for _ in range(TRANSFERS):
            sender, recipient = rng.sample(members, 2)
            attempts.append(
                Attempt(sender, recipient, rng.randint(1, FUNDING // 2), uuid.uuid4().hex)
            )
        twins = rng.sample(attempts, REPEATS)
        sends = attempts + twins
        order = list(range(len(sends)))
        rng.shuffle(order)

        responses = dict(
            zip(
                order,
                await asyncio.gather(*(send(clients, sends[i]) for i in order)),
                strict=True,
            )
        )
        originals = [responses[i] for i in range(TRANSFERS)]
        repeats = [responses[i] for i in range(TRANSFERS, len(sends))]

        statuses = Counter(r.status_code for r in responses.values())
        assert set(statuses) <= {201, 409}, f"seed {seed}: {statuses}"
        refusals = Counter(r.json()["type"] for r in originals if r.status_code == 409)
        assert set(refusals) == {"insufficient_funds"}, f"seed {seed}: {refusals}"
        accepted = {
            r.json()["id"]: attempt
            for attempt, r in zip(attempts, originals, strict=True)
            if r.status_code == 201
        }
        # Enough of both outcomes for the run to mean something.
        assert len(accepted) >= 50, f"seed {seed}: only {len(accepted)} accepted"
        assert refusals["insufficient_funds"] >= 30, f"seed {seed}: {refusals}"

        # A repeat got the original's answer, not a second transfer.
        by_key = {a.key: r for a, r in zip(attempts, originals, strict=True)}
        for twin, repeat in zip(twins, repeats, strict=True):
            original = by_key[twin.key]
            assert repeat.status_code == original.status_code, f"seed {seed}"
            assert repeat.json() == original.json(), f"seed {seed}"

        balances = {}
        for member in members:
            wallets = (await http.get("/transactions/balance", headers=member.headers)).json()
            [usd] = wallets["balances"]
            assert usd["balance"] >= 0
            assert usd["available"] == usd["balance"] >= 0
            balances[member.id] = usd["balance"]
        assert sum(balances.values()) == USERS * FUNDING, f"seed {seed}: money not conserved"

        sent: Counter[str] = Counter()
        received: Counter[str] = Counter()
        for member in members:
            entries = await every_item(http, "/transactions", member.headers)
            running = 0
            for entry in reversed(entries):  # oldest first
                running += entry["amount"]
                assert entry["balance_after"] == running, f"seed {seed}: broken balance chain"
                if entry["type"] == "transfer_out":
                    sent[entry["reference"]] += 1
                    attempt = accepted[entry["reference"]]
                    assert (attempt.sender, -attempt.amount) == (member, entry["amount"])
                elif entry["type"] == "transfer_in":
                    received[entry["reference"]] += 1
                    attempt = accepted[entry["reference"]]
                    assert (attempt.recipient, attempt.amount) == (member, entry["amount"])
            assert running == balances[member.id]
        assert sent == received == Counter(dict.fromkeys(accepted, 1)), f"seed {seed}"

        check = await http.get("/internal/ledger/check", headers=service_headers)
        assert check.json()["ok"] is True, check.json()["violations"]
