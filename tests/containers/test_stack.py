"""The running compose stack: users, filesystems, healthchecks, and a service killed under
traffic (run by `make test-containers` only; tests/containers/compose.py starts the stack)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from typing import Any

import httpx
import pytest

from micropay_testing.polling import eventually
from tests.containers.compose import (
    COMPOSE_FILES,
    LONG_RUNNING,
    SERVICE_NAMES,
    ComposeStack,
    docker,
)
from tests.e2e.client import Api

pytestmark = pytest.mark.timeout(300)

# The parts built by this project: each runs as the images' user 10001.
PROJECT_PARTS = (*SERVICE_NAMES, "localstripe", "bootstrap")


def state(stack: ComposeStack, service: str) -> dict[str, Any]:
    """The container's State."""
    value: dict[str, Any] = stack.inspect(service)["State"]  # type: ignore[assignment]
    return value


@pytest.mark.parametrize("service", PROJECT_PARTS)
def test_project_containers_run_as_non_root_on_a_read_only_root(
    compose_stack: ComposeStack, service: str
) -> None:
    details = compose_stack.inspect(service)
    config: dict[str, Any] = details["Config"]  # type: ignore[assignment]
    host: dict[str, Any] = details["HostConfig"]  # type: ignore[assignment]
    assert config["User"] == "10001:10001"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert "no-new-privileges:true" in host["SecurityOpt"]
    if service == "bootstrap":
        assert state(compose_stack, service)["ExitCode"] == 0
        return
    # What the running process really is, and that it cannot write its own filesystem.
    whoami = compose_stack.compose("exec", "-T", service, "id", "-u").stdout.strip()
    assert whoami == "10001"
    probe = compose_stack.compose(
        "exec", "-T", service, "sh", "-c", "touch /app/probe || touch /probe", check=False
    )
    assert probe.returncode != 0
    assert "Read-only file system" in probe.stderr
    # /tmp is the one writable place (a tmpfs).
    tmp = compose_stack.compose("exec", "-T", service, "touch", "/tmp/probe", check=False)  # noqa: S108
    assert tmp.returncode == 0, tmp.stderr


@pytest.mark.parametrize("service", LONG_RUNNING)
def test_every_long_running_part_is_healthy(compose_stack: ComposeStack, service: str) -> None:
    current = state(compose_stack, service)
    assert current["Running"] is True
    assert current["Health"]["Status"] == "healthy", current["Health"]["Log"][-1:]


def test_only_the_gateway_of_the_real_compose_file_is_published(
    compose_stack: ComposeStack,
) -> None:
    # The test overlay publishes more; docker-compose.yml alone publishes the gateway only.
    base = docker(
        "compose",
        "--env-file",
        str(compose_stack.env_file),
        "--file",
        str(COMPOSE_FILES[0]),
        "config",
        "--format",
        "json",
    )
    services = json.loads(base.stdout)["services"]
    published = {name for name, spec in services.items() if spec.get("ports")}
    assert published == {"gateway"}
    assert [port["host_ip"] for port in services["gateway"]["ports"]] == ["127.0.0.1"]


async def test_a_killed_service_restarts_and_no_money_is_lost_or_booked_twice(
    compose_stack: ComposeStack,
) -> None:
    """Transfers run while the transactions container's process is killed; each is retried
    with its own Idempotency-Key until it is answered. After the restart every answered
    transfer is booked exactly once and the ledger balances."""
    assert compose_stack.gateway_url is not None
    async with httpx.AsyncClient(
        base_url=compose_stack.gateway_url, timeout=10, trust_env=False
    ) as client:
        api = Api(client=client, stack=compose_stack)
        sender = await api.register("kill-sender")
        recipient = await api.register("kill-recipient")
        topped = await api.top_up(sender, 50_000)
        assert topped.status_code in (200, 201), topped.text
        await api.balance_becomes(sender, 50_000, within=60)

        container = compose_stack.container("transactions")
        before = state(compose_stack, "transactions")
        restarts = compose_stack.inspect("transactions")["RestartCount"]
        keys = [str(uuid.uuid4()) for _ in range(20)]
        answered: dict[str, int] = {}
        failures: list[int] = []

        async def send(key: str) -> None:
            deadline = time.monotonic() + 150
            while time.monotonic() < deadline:
                try:
                    response = await api.transfer(sender, recipient.email, 100, key=key)
                except httpx.TransportError:
                    failures.append(0)
                else:
                    if response.status_code in (200, 201):
                        answered[key] = response.status_code
                        return
                    failures.append(response.status_code)
                await asyncio.sleep(0.5)

        async def traffic() -> None:
            for index in range(0, len(keys), 4):
                await asyncio.gather(*(send(key) for key in keys[index : index + 4]))

        async def kill() -> None:
            # Under way: some transfers answered, more in flight.
            await eventually(lambda: len(answered) >= 4, within=60)
            # A crash: SIGKILL to the container's process, as the OOM killer would send it.
            # (`docker kill` itself counts as a deliberate stop, which a restart policy
            # leaves stopped.)
            pid = int(before["Pid"])
            assert pid > 0
            os.kill(pid, signal.SIGKILL)

        await asyncio.gather(traffic(), kill())

        after = state(compose_stack, "transactions")
        # The restart policy (unless-stopped) brought the same container back.
        assert compose_stack.inspect("transactions")["RestartCount"] == restarts + 1  # type: ignore[operator]
        assert compose_stack.container("transactions") == container
        assert after["StartedAt"] != before["StartedAt"]
        assert after["Running"] is True
        assert failures, "the kill should have failed some requests"
        assert set(answered) == set(keys), f"unanswered: {set(keys) - set(answered)}"

        await eventually(
            lambda: state(compose_stack, "transactions")["Health"]["Status"] == "healthy",
            within=120,
            interval=1,
        )
        # Money conserved: what left the sender is exactly what reached the recipient, once
        # per key, and the ledger's own invariant check passes.
        await api.balance_becomes(sender, 50_000 - 100 * len(keys), within=60)
        await api.balance_becomes(recipient, 100 * len(keys), within=60)
        received = [line for line in await api.history(recipient) if line["type"] == "transfer_in"]
        sent = [line for line in await api.history(sender) if line["type"] == "transfer_out"]
        assert len(received) == len(sent) == len(keys)
        assert len({line["reference"] for line in received}) == len(keys)
        check = await api.ledger_check()
        assert check["ok"] is True, check
