"""localstripe through stack.localstripe_server: loopback only, empty at every start."""

from __future__ import annotations

import sys

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
