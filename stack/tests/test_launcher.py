"""The whole local stack through the importable launcher, on free ports, then stopped."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from micropay_testing.gateway import OutputLines
from stack.launcher import (
    LOCAL_SIGNUP_LIMITS,
    ROOT,
    SERVICES,
    ChildExitedError,
    PortInUseError,
    Stack,
    StackConfig,
    free_port,
)
from stack.postgres import PostgresServer, drop_database
from stack.processes import process_alive, process_group_alive

pytestmark = pytest.mark.timeout(120)


def _config(tmp_path: Path, **overrides: object) -> tuple[StackConfig, str | None]:
    """Free ports and a private data dir; PostgreSQL from DATABASE_URL when set."""
    database_url = os.environ.get("DATABASE_URL") or None
    options: dict[str, object] = {"data_dir": tmp_path / "data", "database_url": database_url}
    if database_url:
        # A shared server: a database of our own, and the role passwords every stack there uses.
        options["database_name"] = f"micropay_stack_{uuid.uuid4().hex[:8]}"
        options["role_passwords_file"] = ROOT / ".data" / "role-passwords.json"
    options.update(overrides)
    return StackConfig.with_free_ports(**options), database_url


def _drop(config: StackConfig, database_url: str | None) -> None:
    if database_url:
        asyncio.run(drop_database(PostgresServer(database_url), config.database_name))


@dataclass
class Run:
    """What was observed while a stack ran, checked by the tests after it was stopped."""

    stack: Stack
    ready: dict[str, int] = field(default_factory=dict)
    docs: dict[str, int] = field(default_factory=dict)
    gateway: dict[str, httpx.Response] = field(default_factory=dict)
    localstripe_status: int = 0
    pids: dict[str, int] = field(default_factory=dict)
    postmaster: int | None = None


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """Start a stack, look at it, stop it; the tests then check what was seen and what is left."""
    config, database_url = _config(tmp_path_factory.mktemp("stack"))
    output = OutputLines()
    stack = Stack(config, output=output)
    run = Run(stack)
    try:
        stack.start()
        with httpx.Client(timeout=10, trust_env=False) as client:
            for name, url in stack.service_urls.items():
                run.ready[name] = client.get(f"{url}/health/ready").status_code
                run.docs[name] = client.get(f"{url}/docs").status_code
            if stack.gateway_url:
                gateway = stack.gateway_url
                run.gateway["docs"] = client.get(f"{gateway}/auth/docs")
                run.gateway["anonymous"] = client.get(f"{gateway}/payments")
                run.gateway["bogus_token"] = client.get(
                    f"{gateway}/payments", headers={"Authorization": "Bearer bogus"}
                )
                run.gateway["internal"] = client.get(f"{gateway}/internal/events")
                credentials = {
                    "email": f"launcher-{uuid.uuid4().hex[:8]}@example.com",
                    "password": "Launcher-Pass-1",
                }
                client.post(f"{gateway}/auth/register", json=credentials)
                login = client.post(f"{gateway}/auth/login", json=credentials)
                token = login.json().get("access_token", "")
                run.gateway["valid_token"] = client.get(
                    f"{gateway}/auth/me", headers={"Authorization": f"Bearer {token}"}
                )
            run.localstripe_status = client.get(
                f"{stack.localstripe_url}/v1/customers",
                headers={"Authorization": "Bearer sk_test_local"},
            ).status_code
        run.pids = stack.pids()
        embedded = stack.postgres.embedded if stack.postgres else None
        run.postmaster = int(embedded.get_pid()) if embedded is not None else None
    except BaseException:
        print("\n".join(output.lines[-200:]))
        raise
    finally:
        stack.stop()
        _drop(config, database_url)
    return run


def test_every_service_is_ready_on_its_own_port(run: Run) -> None:
    assert run.ready == dict.fromkeys(SERVICES, 200)
    assert run.docs == dict.fromkeys(SERVICES, 200)
    assert run.localstripe_status == 200
    assert run.stack.ready_seconds is not None
    assert run.stack.ready_seconds < 60


def test_the_gateway_routes_to_the_services(run: Run) -> None:
    if run.stack.gateway_url is None:
        pytest.skip(f"no gateway: {run.stack.gateway_skipped_reason}")
    docs = run.gateway["docs"]
    assert docs.status_code == 200
    assert "/auth/openapi.json" in docs.text

    anonymous = run.gateway["anonymous"]
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == "application/problem+json"
    assert anonymous.json()["type"] == "invalid_token"

    bogus = run.gateway["bogus_token"]
    assert bogus.status_code == 401
    assert bogus.headers["content-type"] == "application/problem+json"
    assert bogus.json()["type"] == "invalid_token"

    # A valid token passes the check and reaches the service.
    valid = run.gateway["valid_token"]
    assert valid.status_code == 200, valid.text
    assert valid.json()["email"].startswith("launcher-")

    internal = run.gateway["internal"]
    assert internal.status_code == 404
    assert internal.headers["content-type"] == "application/problem+json"


def test_the_generated_environment_is_private_and_complete(run: Run) -> None:
    stack = run.stack
    assert stat.S_IMODE(stack.env_file.stat().st_mode) == 0o600
    text = stack.env_file.read_text()
    for name in ("COGNITO_USER_POOL_ID", "STRIPE_WEBHOOK_SECRET", "SNS_TOPIC_ARN", "PAYMENT_URL"):
        assert f"export {name}=" in text
    payment = stack.service_env("payment")
    assert payment["STRIPE_WEBHOOK_SECRET"].startswith("whsec_")
    assert payment["STRIPE_API_BASE"] == stack.localstripe_url
    assert payment["AWS_ENDPOINT_URL"] == stack.moto_url
    auth = stack.service_env("auth")
    assert auth["AUTH_AUTO_CONFIRM"] == "true"
    assert LOCAL_SIGNUP_LIMITS.items() <= auth.items()
    assert stack.service_env("notifications")["SNS_TOPIC_ARN"].endswith(":micropay-sns")
    kms_key = stack.service_env("notifications")["WEBHOOK_SECRETS_KMS_KEY_ID"]
    assert kms_key == "alias/micropay-webhook-secrets"
    assert len({stack.service_env(name)["DATABASE_URL"] for name in SERVICES}) == 4


def test_stop_leaves_no_process_behind(run: Run) -> None:
    stack = run.stack
    expected = {"moto", "localstripe", "paypal", *SERVICES} | (
        {"gateway"} if stack.gateway_url else set()
    )
    assert set(run.pids) == expected
    for name, pid in run.pids.items():
        assert not process_group_alive(pid), f"{name} left processes behind"
        assert not stack.processes[name].group_alive()
    if run.postmaster is not None:
        assert not process_alive(run.postmaster), "the embedded PostgreSQL still runs"
    for port in stack.config.ports().values():
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers"


def test_a_taken_port_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config, _ = _config(tmp_path, moto_port=port)
        stack = Stack(config, output=OutputLines())
        with pytest.raises(PortInUseError, match=rf"port {port} \(moto\).*already in use"):
            stack.start()
    assert stack.processes == {}
    assert stack.postgres is None


def test_ports_used_twice_are_refused(tmp_path: Path) -> None:
    port = free_port()
    config, _ = _config(tmp_path, moto_port=port, localstripe_port=port)
    with pytest.raises(PortInUseError, match="both moto and localstripe"):
        Stack(config, output=OutputLines()).start()


def test_a_service_failing_at_start_up_stops_everything_and_shows_its_output(
    tmp_path: Path,
) -> None:
    config, database_url = _config(tmp_path, service_extra_env={"DB_POOL_SIZE": "0"}, gateway=False)
    stack = Stack(config, output=OutputLines())
    try:
        with pytest.raises(ChildExitedError, match="during start-up") as failure:
            stack.start()
    finally:
        _drop(config, database_url)
    assert "DB_POOL_SIZE" in str(failure.value)
    assert failure.value.process.name in SERVICES
    for process in stack.processes.values():
        assert not process.group_alive()
