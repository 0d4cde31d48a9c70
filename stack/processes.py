"""Child processes of the local stack: own process group, prefixed output, orderly stop."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO

OutputSink = Callable[[str, str], None]
"""Receives (process name, one line of its output without the newline)."""

_COLORS = ("36", "32", "33", "35", "34", "96", "92", "93", "95", "94")


class PrefixedOutput:
    """Writes child output as `name | line`, one whole line at a time, optionally coloured."""

    def __init__(self, stream: IO[str] | None = None, *, width: int = 13) -> None:
        self.stream = stream or sys.stdout
        self.width = width
        self.color = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._colors: dict[str, str] = {}
        self._lock = threading.Lock()

    def __call__(self, name: str, line: str) -> None:
        """Write one line of `name`'s output."""
        prefix = f"{name:<{self.width}}|"
        if self.color:
            code = self._colors.setdefault(name, _COLORS[len(self._colors) % len(_COLORS)])
            prefix = f"\033[{code}m{prefix}\033[0m"
        with self._lock:
            self.stream.write(f"{prefix} {line}\n")
            self.stream.flush()

    def message(self, text: str) -> None:
        """Write launcher text (not from a child) without interleaving with child lines."""
        with self._lock:
            self.stream.write(text if text.endswith("\n") else text + "\n")
            self.stream.flush()


def discard_output(name: str, line: str) -> None:
    """An output sink that keeps nothing (the last lines are still kept per process)."""


class ManagedProcess:
    """One child in its own session (so signals reach its whole process group)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        output: OutputSink,
        tail_lines: int = 60,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.cwd = cwd
        self.output = output
        self._tail: deque[str] = deque(maxlen=tail_lines)
        self._popen: subprocess.Popen[bytes] | None = None
        self._pump: threading.Thread | None = None

    def start(self) -> None:
        """Spawn the process and start copying its output."""
        self._popen = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._pump = threading.Thread(
            target=self._copy_output, name=f"output-{self.name}", daemon=True
        )
        self._pump.start()

    def _copy_output(self) -> None:
        assert self._popen is not None
        assert self._popen.stdout is not None
        for raw in iter(self._popen.stdout.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            self._tail.append(line)
            with contextlib.suppress(Exception):
                self.output(self.name, line)
        self._popen.stdout.close()

    @property
    def pid(self) -> int:
        """Process id (also the process group id)."""
        assert self._popen is not None, f"{self.name} was never started"
        return self._popen.pid

    @property
    def started(self) -> bool:
        """Whether start() ran."""
        return self._popen is not None

    @property
    def returncode(self) -> int | None:
        """Exit status once the process has exited, else None."""
        return None if self._popen is None else self._popen.poll()

    def alive(self) -> bool:
        """Whether the main process is still running."""
        return self._popen is not None and self._popen.poll() is None

    def tail(self) -> list[str]:
        """The last lines the process printed."""
        return list(self._tail)

    def group_alive(self) -> bool:
        """Whether any process of its process group is still running."""
        if self._popen is None:
            return False
        self._popen.poll()
        return process_group_alive(self._popen.pid)

    def signal_group(self, signum: int) -> None:
        """Send `signum` to the whole process group, if any of it is left."""
        if self._popen is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._popen.pid, signum)

    def join_output(self, timeout: float = 2.0) -> None:
        """Wait for the output copier to reach the end of the output."""
        if self._pump is not None:
            self._pump.join(timeout)


def process_group_alive(pgid: int) -> bool:
    """Whether a process group has a member that has not exited (zombies do not count)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        return True
    # Orphans that exited stay zombies until init reaps them, which some container inits do
    # only now and then; they count as gone.
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def process_alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def stop_processes(processes: Iterable[ManagedProcess], *, timeout: float = 10.0) -> None:
    """SIGTERM every group, wait up to `timeout`, then SIGKILL whatever is left."""
    running = [p for p in processes if p.started]
    for process in running:
        process.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(p.group_alive() for p in running):
        time.sleep(0.05)
    leftovers = [p for p in running if p.group_alive()]
    for process in leftovers:
        process.signal_group(signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and any(p.group_alive() for p in leftovers):
        time.sleep(0.05)
    for process in running:
        process.join_output()
