"""`python -m stack run` (what `make run` does): ready, then Ctrl-C/SIGTERM stops it all, exit 0."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from stack.launcher import ROOT, SERVICES, StackConfig
from stack.processes import process_alive, process_group_alive

pytestmark = pytest.mark.timeout(120)


class Launcher:
    """`python -m stack run` on free ports with its own data dir and embedded PostgreSQL."""

    def __init__(self, tmp_path: Path) -> None:
        self.config = StackConfig.with_free_ports(data_dir=tmp_path / "data")
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        env.update(
            {
                "MICROPAY_DATA_DIR": str(self.config.data_dir),
                "MICROPAY_GATEWAY_PORT": str(self.config.gateway_port),
                "MICROPAY_SERVICE_PORT": str(self.config.service_port),
                "MICROPAY_MOTO_PORT": str(self.config.moto_port),
                "MICROPAY_LOCALSTRIPE_PORT": str(self.config.localstripe_port),
                "PYTHONUNBUFFERED": "1",
            }
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "stack", "run"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, text: str, timeout: float = 90) -> None:
        """Block until a line containing `text` was printed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            if text in line:
                return
        self.process.kill()
        pytest.fail(f"never printed {text!r}:\n" + "\n".join(self.lines[-80:]))

    def descendants(self) -> list[int]:
        """Process groups of the launcher's children (each child leads its own)."""
        children = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except (OSError, IndexError):
                    continue
                if int(fields[1]) == self.process.pid:
                    children.append(int(entry.name))
        return children

    def postmaster(self) -> int | None:
        """pid of the embedded PostgreSQL, if it runs."""
        pid_file = self.config.data_dir / "postgres" / "postmaster.pid"
        return int(pid_file.read_text().split()[0]) if pid_file.exists() else None

    def finish(self, timeout: float = 30) -> int:
        """Wait for the launcher to exit and return its status."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail("the launcher did not stop:\n" + "\n".join(self.lines[-80:]))


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc")
def test_ctrl_c_after_start_stops_everything_and_exits_0(tmp_path: Path) -> None:
    launcher = Launcher(tmp_path)
    launcher.wait_for("Press Ctrl-C to stop.")
    for service, url in (
        (name, f"http://127.0.0.1:{port}") for name, port in launcher.config.service_ports.items()
    ):
        assert httpx.get(f"{url}/health/ready", trust_env=False).status_code == 200, service
    children = launcher.descendants()
    assert len(children) >= 2 + len(SERVICES)
    postmaster = launcher.postmaster()
    assert postmaster is not None
    assert process_alive(postmaster)

    launcher.process.send_signal(signal.SIGINT)
    assert launcher.finish() == 0, "\n".join(launcher.lines[-40:])
    assert "MicroPay stopped." in launcher.lines
    for pgid in children:
        assert not process_group_alive(pgid)
    assert not process_alive(postmaster)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc")
def test_sigterm_during_start_up_stops_what_was_started_and_exits_0(tmp_path: Path) -> None:
    launcher = Launcher(tmp_path)
    launcher.wait_for("Starting MicroPay")
    time.sleep(1.0)
    children = launcher.descendants()
    launcher.process.send_signal(signal.SIGTERM)
    assert launcher.finish() == 0, "\n".join(launcher.lines[-40:])
    for pgid in children:
        assert not process_group_alive(pgid)
    postmaster = launcher.postmaster()
    assert postmaster is None or not process_alive(postmaster)


def test_a_taken_port_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        env.update({"MICROPAY_DATA_DIR": str(tmp_path), "MICROPAY_GATEWAY_PORT": str(port)})
        result = subprocess.run(
            [sys.executable, "-m", "stack", "run"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert f"port {port} (gateway) on 127.0.0.1 is already in use" in result.stderr
    assert "--gateway-port" in result.stderr
