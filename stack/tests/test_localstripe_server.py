"""localstripe through stack.localstripe_server: loopback only, empty at every start."""

from __future__ import annotations

import json
import sys
from typing import Any

import httpx
import psutil  # type: ignore[import-untyped]

from micropay_testing.gateway import OutputLines, request, wait_until_answers
from stack.launcher import ROOT, free_port
from stack.processes import ManagedProcess, stop_processes

AUTH = {"Authorization": "Bearer sk_test_local"}


def _start(port: int) -> ManagedProcess:
    process = ManagedProcess(
        "localstripe",
        [
            sys.executable,
            "-m",
            "stack.localstripe_server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env={"PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"},
        cwd=ROOT,
        output=OutputLines(),
    )
    process.start()
    wait_until_answers(port, "/v1/customers", process)
    return process


def test_binds_loopback_only_and_serves_the_stripe_api() -> None:
    port = free_port()
    process = _start(port)
    try:
        listening = [
            conn.laddr
            for conn in psutil.Process(process.pid).net_connections(kind="inet")
            if conn.status == psutil.CONN_LISTEN
        ]
        assert listening, "localstripe listens on nothing"
        assert {address.ip for address in listening} == {"127.0.0.1"}
        assert {address.port for address in listening} == {port}

        assert request(port, "GET", "/v1/customers").status == 401
        answer = request(port, "GET", "/v1/customers", AUTH)
        assert answer.status == 200
        assert answer.json()["object"] == "list"
    finally:
        stop_processes([process], timeout=5)
    assert not process.group_alive()


def test_starts_from_scratch_every_time() -> None:
    port = free_port()
    process = _start(port)
    try:
        created = request(
            port,
            "POST",
            "/v1/customers",
            {**AUTH, "Content-Type": "application/x-www-form-urlencoded"},
            b"email=kept%40example.com",
        )
        assert created.status == 200, created.body
        assert len(request(port, "GET", "/v1/customers", AUTH).json()["data"]) == 1
    finally:
        stop_processes([process], timeout=5)

    process = _start(port)
    try:
        assert request(port, "GET", "/v1/customers", AUTH).json()["data"] == []
    finally:
        stop_processes([process], timeout=5)


def _form(port: int, path: str, body: str) -> dict[str, Any]:
    answer = request(
        port,
        "POST",
        path,
        {**AUTH, "Content-Type": "application/x-www-form-urlencoded"},
        body.encode(),
    )
    assert answer.status == 200, answer.body
    found: dict[str, Any] = answer.json()
    return found


def test_disputes_open_on_a_real_charge_and_move_as_stripe_moves_them() -> None:
    port = free_port()
    process = _start(port)
    try:
        method = _form(
            port,
            "/v1/payment_methods",
            "type=card&card[number]=4242424242424242&card[exp_month]=12&card[exp_year]=2030"
            "&card[cvc]=123",
        )
        intent = _form(
            port,
            "/v1/payment_intents",
            f"amount=2000&currency=usd&payment_method={method['id']}&confirm=true",
        )
        assert intent["status"] == "succeeded"
        # No key, or a charge Stripe does not have: refused like any Stripe call.
        assert request(port, "POST", "/_micropay/disputes").status == 401
        missing = request(port, "GET", "/v1/disputes/dp_nothing", AUTH)
        assert missing.status == 404

        opened = _form(port, "/_micropay/disputes", f"payment_intent={intent['id']}&amount=1500")
        assert opened["status"] == "needs_response"
        assert opened["amount"] == 1500
        assert opened["payment_intent"] == intent["id"]
        [withdrawal] = opened["balance_transactions"]
        assert (withdrawal["amount"], withdrawal["fee"]) == (-1500, 1500)
        read = request(port, "GET", f"/v1/disputes/{opened['id']}", AUTH).json()
        assert read == opened

        won = _form(
            port,
            f"/v1/disputes/{opened['id']}",
            "evidence[uncategorized_text]=winning_evidence",
        )
        assert won["status"] == "won"
        assert [t["amount"] for t in won["balance_transactions"]] == [-1500, 1500]
        closed_again = request(port, "POST", f"/v1/disputes/{opened['id']}/close", AUTH)
        assert closed_again.status == 400
    finally:
        stop_processes([process], timeout=5)


def test_stripe_js_can_create_payment_methods_with_the_publishable_key(
    localstripe_url: str,
) -> None:
    with httpx.Client(base_url=localstripe_url, timeout=10, trust_env=False) as client:
        script = client.get("/js.stripe.com/v3/")
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("application/javascript")
        assert "confirmCardPayment" in script.text
        assert "stripe.createPaymentMethod = async" in script.text
        card = {"number": "4242424242424242", "exp_month": "12", "exp_year": "2034", "cvc": "123"}
        body = {"key": "pk_test_local", "type": "card", "card": card}
        # text/plain, as the browser sends it to avoid a CORS preflight.
        created = client.post("/js.stripe.com/v3/payment_methods", content=json.dumps(body))
        assert created.status_code == 200, created.text
        method = created.json()
        assert method["id"].startswith("pm_")
        assert method["card"]["last4"] == "4242"
        # The secret-key API knows it: the payment service can confirm a PaymentIntent with it.
        found = client.get(f"/v1/payment_methods/{method['id']}", headers=AUTH)
        assert found.status_code == 200
        refused = client.post(
            "/js.stripe.com/v3/payment_methods",
            content=json.dumps({**body, "key": "sk_test_local"}),
        )
        assert refused.status_code == 401
