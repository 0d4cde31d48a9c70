"""./run_docker_local.sh as a user runs it, in a fresh copy of the checkout with no .env
(run by `make test-containers` only)."""

from __future__ import annotations

import os
import secrets
import stat
import subprocess
from pathlib import Path

import httpx
import pytest

from micropay_testing.processes import free_port
from tests.containers.compose import BASE_IMAGE_VARIABLES, ROOT, require_engine

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """The checkout's files (tracked and new, never ignored ones such as .env) in a new folder."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    copy = tmp_path / "micropay"
    for name in filter(None, listed):
        source = ROOT / name.decode()
        if not source.is_file():
            continue  # deleted but not yet committed
        target = copy / name.decode()
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
        target.chmod(source.stat().st_mode)
    return copy


def test_run_docker_local_starts_the_stack_and_stops_it(checkout: Path) -> None:
    require_engine()
    port = free_port()
    project = f"micropay-local-{secrets.token_hex(3)}"
    env = {
        **os.environ,
        "COMPOSE_PROJECT_NAME": project,
        "MICROPAY_GATEWAY_PUBLISH": f"127.0.0.1:{port}",
    }
    # A user sets none of the base-image variables: the script finds out what it can pull.
    for name in BASE_IMAGE_VARIABLES:
        env.pop(name, None)
    try:
        up = subprocess.run(
            ["./run_docker_local.sh"],
            cwd=checkout,
            env=env,
            capture_output=True,
            text=True,
            timeout=540,
            check=False,
        )
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        assert "wrote .env with new random passwords" in up.stdout
        assert f"MicroPay is up: http://127.0.0.1:{port}" in up.stdout
        dotenv = checkout / ".env"
        assert stat.S_IMODE(dotenv.stat().st_mode) == 0o600
        assert not [line for line in dotenv.read_text().splitlines() if line.endswith("=change-me")]
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10, trust_env=False)
        assert health.status_code == 200
        down = subprocess.run(
            ["./run_docker_local.sh", "down"],
            cwd=checkout,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert down.returncode == 0, down.stderr
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5, trust_env=False)
    finally:
        subprocess.run(
            ["docker", "compose", "--project-name", project, "down", "--volumes"],
            cwd=checkout,
            env=env,
            capture_output=True,
            timeout=180,
            check=False,
        )
