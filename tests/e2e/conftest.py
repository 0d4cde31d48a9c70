"""One whole local stack for the e2e session, started by the launcher `make run` uses.

It runs on free ports with its own data directory and its own embedded PostgreSQL (so the
fault tests can stop and restart that server without touching anybody else's), and the tests
drive it through the gateway as a client would. Fault tests put back what they stop.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, cast

import httpx
import pytest

from stack.gateway import find_nginx
from stack.launcher import Stack, StackConfig
from tests.e2e.client import Api, StackView

if TYPE_CHECKING:
    from tests.containers.compose import ComposeStack

# Settings that only shorten waits; every guarantee the tests check holds with the defaults.
E2E_SERVICE_ENV = {
    # A consumer that comes back is retried within seconds, not the production cap of minutes.
    "OUTBOX_BACKOFF_MAX_SECONDS": "2",
    # ...and with that short cap, a consumer stopped for a while must not make events dead.
    "OUTBOX_MAX_ATTEMPTS": "1000",
    # Each service renews its own token three seconds after getting it, as if it expired then.
    "SERVICE_TOKEN_REFRESH_MARGIN_SECONDS": "3597",
    # Notifications' retries after a provider error: seconds rather than minutes.
    "DELIVERY_RETRY_SCHEDULE": "1,1,2,2,5",
    "WEBHOOK_RETRY_SCHEDULE": "1,1,2,2,5",
    # A message whose outcome could not be recorded (database down) is sent again when its
    # lease ends: 20 s rather than 120 s (the lease must be twice the longest send).
    "DELIVERY_LEASE_SECONDS": "20",
    "AWS_TIMEOUT_SECONDS": "5",
    "WEBHOOK_TIMEOUT_SECONDS": "5",
}


class StackLog:
    """Every line the stack's processes print, kept in memory and in a file for post-mortems."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: deque[str] = deque(maxlen=200_000)
        self.count = 0  # lines ever printed; the deque keeps only the latest
        self._lock = threading.Lock()
        self._file = path.open("a", encoding="utf-8")

    def __call__(self, name: str, line: str) -> None:
        entry = f"{name} | {line}"
        with self._lock:
            self.lines.append(entry)
            self.count += 1
            self._file.write(entry + "\n")
            self._file.flush()

    def mark(self) -> int:
        """A position to read the lines printed after it."""
        with self._lock:
            return self.count

    def since(self, mark: int, process: str | None = None) -> list[str]:
        """Lines printed after `mark`, optionally only those of one process."""
        with self._lock:
            kept = list(self.lines)
            lines = kept[max(0, len(kept) - (self.count - mark)) :]
        if process is None:
            return lines
        return [line for line in lines if line.startswith(f"{process} | ")]

    def close(self) -> None:
        """Close the file."""
        self._file.close()


@pytest.fixture(scope="session")
def stack_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackLog]:
    """The processes' output of the e2e stack."""
    log = StackLog(tmp_path_factory.mktemp("e2e-logs") / "stack.log")
    yield log
    log.close()


def compose_target() -> bool:
    """True when `make test-containers` points the e2e tests at the docker compose stack."""
    return os.environ.get("MICROPAY_E2E_TARGET") == "compose"


@pytest.fixture(scope="session")
def stack(stack_log: StackLog, request: pytest.FixtureRequest) -> Iterator[StackView]:
    """The whole stack (gateway included) on free ports, stopped at the end of the session; the
    docker compose stack of tests/containers/compose.py with MICROPAY_E2E_TARGET=compose."""
    if compose_target():
        yield request.getfixturevalue("compose_stack")
        return
    if find_nginx() is None:
        pytest.fail("the e2e tests drive the stack through the nginx gateway: install nginx")
    # Not under pytest's temporary directory: the embedded PostgreSQL runs as another user
    # (pgserver's, when tests run as root) that must reach its data directory until the end.
    data_dir = Path(tempfile.mkdtemp(prefix="micropay-e2e-"))
    config = StackConfig.with_free_ports(
        data_dir=data_dir,
        # Never DATABASE_URL's server: the PostgreSQL fault test restarts this one.
        database_url=None,
        service_extra_env=E2E_SERVICE_ENV,
    )
    stack = Stack(config, output=stack_log)
    try:
        stack.start()
    except Exception as exc:
        shutil.rmtree(data_dir, ignore_errors=True)
        pytest.fail(f"the e2e stack did not start ({exc}); its output: {stack_log.path}")
    try:
        yield stack
    finally:
        stack.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
async def api(stack: StackView) -> AsyncIterator[Api]:
    """A client of the gateway, with the stack's stand-ins at hand for what a browser does."""
    assert stack.gateway_url is not None
    hosts: dict[str, str] = {}
    if compose_target():
        compose_stack = cast("ComposeStack", stack)
        hosts = {
            "receiver_listen_host": compose_stack.receiver_listen_host,
            "receiver_url_host": compose_stack.receiver_url_host,
        }
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=30, trust_env=False) as client:
        yield Api(client=client, stack=stack, **hosts)


@pytest.fixture(autouse=True)
def _stack_whole_after(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every service still answers after a test, so a fault test cannot leak into the next."""
    yield
    if "stack" not in request.fixturenames:
        return
    stack: StackView = request.getfixturevalue("stack")
    with httpx.Client(timeout=5, trust_env=False) as client:
        for name, url in stack.service_urls.items():
            status = client.get(f"{url}/health/ready").status_code
            assert status == 200, f"{name} is not ready after the test ({status})"
