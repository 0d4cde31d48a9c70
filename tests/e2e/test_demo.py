"""`make demo` walks the whole journey against a running stack, here the e2e one."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from stack.demo import build_parser, money
from stack.launcher import ROOT, Stack

pytestmark = pytest.mark.timeout(120)


async def test_the_demo_runs_the_journey_against_a_stack_on_other_ports(stack: Stack) -> None:
    assert stack.gateway_url is not None
    command = [
        sys.executable,
        "-m",
        "stack.demo",
        "--gateway",
        stack.gateway_url,
        "--moto",
        stack.moto_url,
        "--localstripe",
        stack.localstripe_url,
        "--paypal",
        stack.paypal_url,
        "--service-port",
        str(stack.config.service_port),
        "--no-color",
    ]
    result = await asyncio.to_thread(
        subprocess.run, command, cwd=ROOT, capture_output=True, text=True, timeout=100
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    out = result.stdout
    assert "Balances: Ana 35.00 USD, Bob 25.00 USD" in out
    assert "<- 402" in out
    assert '"type": "recipient_unavailable"' in out
    assert '"status": "requires_action"' in out
    assert "signature verified with standardwebhooks (0 bad)" in out
    assert '"provider": "paypal"' in out
    assert "Balance: Bob 35.00 USD" in out
    assert '"type": "security_notice_required"' in out
    assert "Bob's top-up notifications: email skipped, push sent" in out
    assert '"status": "paid"' in out
    assert '"type": "money_request_not_open"' in out
    assert "Balances: Ana 30.00 USD, Bob 40.00 USD" in out
    assert '"status": "pending"' in out
    assert "Balances: Ana 27.00 USD, Cleo 3.00 USD" in out
    assert "Opening balance + every line = closing balance" in out
    assert f"{stack.service_urls['payment']}/docs" in out
    assert out.rstrip().endswith("That was the whole journey.")


def test_the_demo_defaults_follow_make_runs_port_variables() -> None:
    environ = {"MICROPAY_GATEWAY_PORT": "9080", "MICROPAY_SERVICE_PORT": "9001"}
    args = build_parser(environ).parse_args([])
    assert args.gateway == "http://127.0.0.1:9080"
    assert args.service_port == 9001
    assert args.moto == "http://127.0.0.1:4566"
    assert args.paypal == "http://127.0.0.1:8430"
    assert [money(-1000), money(123456), money(5)] == ["-10.00 USD", "1,234.56 USD", "0.05 USD"]
