"""Processes and ports for tests: free ports, waiting for HTTP, helper processes."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from stack import launcher

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / ".data"
"""Where tests keep their embedded PostgreSQL, helper logs and role passwords."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, outside the ephemeral range."""
    return launcher.free_port()


def wait_for_http(
    url: str, timeout: float = 30.0, process: subprocess.Popen[Any] | None = None
) -> None:
    """Poll `url` until it answers, or fail naming what did not start."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            pytest.fail(f"the process serving {url} exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError as exc:
            last_error = exc
            time.sleep(0.1)
    pytest.fail(f"{url} did not answer within {timeout}s: {last_error!r}")


@contextmanager
def background_process(name: str, args: list[str], ready_url: str) -> Iterator[str]:
    """Run a helper process (output to .data/test-logs/<name>.log) until the block ends."""
    log_dir = DATA_DIR / "test-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / f"{name}.log").open("w") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_http(ready_url, process=process)
            yield ready_url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
