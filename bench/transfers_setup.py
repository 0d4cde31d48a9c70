"""The environment of the transactions benchmarks: a dedicated database, moto, funded users,
the transactions service under uvicorn in its own process, and a lean HTTP/1.1 client.

Used by `python -m bench.transfers` and `python -m bench.transfers_history`; run those.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx

from micropay_common.events import (
    Event,
    EventEnvelope,
    PaymentSucceeded,
    UserRegistered,
    producer_of,
)
from micropay_common.services import SERVICES, ServiceName
from stack.bootstrap import AwsResources, admin_log_in, bootstrap_aws, create_confirmed_user
from stack.postgres import PostgresServer, ensure_database, migrate_database

ROOT = Path(__file__).resolve().parent.parent

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_DATABASE = "micropay_bench"
FUNDING = 100_000_000_000
LOG_DIR = ROOT / ".data" / "bench"


@dataclass(frozen=True)
class BenchUser:
    """A pool user registered and funded in the ledger."""

    index: int
    user_id: str
    email: str
    token: str


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Poll `url` until it answers; fail if the process exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{process.args!r} exited with {process.returncode}; see {LOG_DIR}")
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(url, timeout=1)
            return
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {timeout}s")


@contextlib.contextmanager
def process(
    name: str, args: list[str], ready_url: str, env: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a helper process (output in .data/bench/<name>.log) until the block ends."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with (LOG_DIR / f"{name}.log").open("wb") as log:
        child = subprocess.Popen(  # noqa: S603
            args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT
        )
        try:
            wait_until_up(ready_url, child)
            yield child
        finally:
            child.terminate()
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def database_url(admin_url: str, database: str, role: str | None = None) -> str:
    """The admin URL pointed at `database`, optionally as another role (trust auth)."""
    return PostgresServer(admin_url=admin_url).url_for(database, role, None)


async def recreate_database(admin_url: str, database: str) -> None:
    """Drop and create the bench database, then migrate it to the latest revision."""
    server = PostgresServer(admin_url=admin_url)
    await ensure_database(server, database, recreate=True)
    await migrate_database(server, database)


def log_in(aws: AwsResources, username: str, password: str) -> str:
    """An access token for a pool user."""
    cognito = boto3.client("cognito-idp", region_name=aws.region, endpoint_url=aws.endpoint_url)
    return str(admin_log_in(cognito, aws, username, password)["AccessToken"])


def create_users(aws: AwsResources, count: int) -> list[tuple[str, str, str]]:
    """`count` confirmed pool users: (sub, email, access token)."""
    cognito = boto3.client("cognito-idp", region_name=aws.region, endpoint_url=aws.endpoint_url)
    users = []
    run = uuid.uuid4().hex[:6]
    for index in range(count):
        email = f"bench-{run}-{index}@example.com"
        password = f"Pw-{uuid.uuid4().hex}A1"
        sub = create_confirmed_user(cognito, aws.user_pool_id, email, password)
        access = admin_log_in(cognito, aws, email, password)["AccessToken"]
        users.append((sub, email, access))
    return users


def envelope(event: Event) -> dict[str, Any]:
    """An event envelope as a producer's relay posts it."""
    return EventEnvelope.of(event).model_dump(mode="json")


def register_and_fund(
    base_url: str, producer_tokens: dict[str, str], users: list[tuple[str, str, str]]
) -> list[BenchUser]:
    """Deliver user.registered and a large payment.succeeded for each user, each as its producer."""
    registered = []
    with httpx.Client(base_url=base_url, timeout=30) as http:
        for index, (sub, email, token) in enumerate(users):
            for body in (
                envelope(UserRegistered(user_id=sub, email=email)),
                envelope(
                    PaymentSucceeded(
                        payment_id=f"pay_bench_{uuid.uuid4().hex}",
                        user_id=sub,
                        amount=FUNDING,
                        currency="USD",
                    )
                ),
            ):
                producer_token = producer_tokens[producer_of(body["type"])]
                response = http.post(
                    "/internal/events",
                    json=body,
                    headers={"Authorization": f"Bearer {producer_token}"},
                )
                response.raise_for_status()
            registered.append(BenchUser(index, sub, email, token))
    return registered


@dataclass
class Environment:
    """Everything a benchmark run needs."""

    base_url: str
    admin_dsn: str
    app_dsn: str
    app_pid: int
    users: list[BenchUser]
    service_token: str


@contextlib.contextmanager
def environment(
    *, admin_url: str, database: str, users: int, workers: int, pool_size: int
) -> Iterator[Environment]:
    """A fresh bench database, moto, the service under uvicorn, registered funded users."""
    asyncio.run(recreate_database(admin_url, database))
    moto_port, app_port = free_port(), free_port()
    moto_url = f"http://127.0.0.1:{moto_port}"
    base_env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    os.environ.update({k: base_env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")})
    moto_args = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)]
    with process("moto", moto_args, f"{moto_url}/moto-api/", base_env):
        aws = bootstrap_aws(endpoint_url=moto_url)
        nowhere = f"http://127.0.0.1:{free_port()}"
        app_dsn = database_url(admin_url, database, SERVICES[ServiceName.TRANSACTIONS].role)
        app_env = {
            **base_env,
            **aws.service_env("transactions"),
            "DATABASE_URL": app_dsn,
            "DB_POOL_SIZE": str(pool_size),
            "DB_MAX_OVERFLOW": "0",
            "LOG_LEVEL": "WARNING",
            "AUTH_URL": nowhere,
            "PAYMENT_URL": nowhere,
            "NOTIFICATIONS_URL": nowhere,
            # The relay and the sweep would add work of their own; the bench measures requests.
            "OUTBOX_POLL_INTERVAL_SECONDS": "3600",
            "HOLD_SWEEP_INTERVAL_SECONDS": "3600",
        }
        app_args = [
            sys.executable,
            "-m",
            "uvicorn",
            "transactions_microservice.main:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(app_port),
            "--workers",
            str(workers),
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        base_url = f"http://127.0.0.1:{app_port}"
        with process("transactions", app_args, f"{base_url}/health/ready", app_env) as app:
            tokens = {
                service: log_in(aws, account["username"], account["password"])
                for service, account in aws.service_accounts.items()
            }
            service_token = tokens[ServiceName.PAYMENT]
            print(f"creating {users} users in moto …", file=sys.stderr)
            members = register_and_fund(base_url, tokens, create_users(aws, users))
            yield Environment(
                base_url=base_url,
                admin_dsn=database_url(admin_url, database),
                app_dsn=app_dsn,
                app_pid=app.pid,
                users=members,
                service_token=service_token,
            )


def process_tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and its descendants (Linux)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                pending.extend(int(child) for child in children)
    return total


# --- A lean HTTP/1.1 client: the load generator must not be the bottleneck ------------------


class Connection:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, base_url: str) -> Connection:
        """Connect to http://host:port."""
        host, port = base_url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        return cls(reader, writer)

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: Any = None
    ) -> tuple[int, bytes]:
        """Send one request and read the whole response: (status, body)."""
        payload = b"" if body is None else json.dumps(body).encode()
        head = [f"{method} {path} HTTP/1.1", "Host: bench", f"Content-Length: {len(payload)}"]
        if body is not None:
            head.append("Content-Type: application/json")
        head.extend(f"{name}: {value}" for name, value in headers.items())
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
        status_line = await self.reader.readuntil(b"\r\n")
        status = int(status_line.split(b" ", 2)[1])
        length = 0
        while True:
            line = await self.reader.readuntil(b"\r\n")
            if line == b"\r\n":
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        """Close the connection."""
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


def percentile(sorted_values: list[float], fraction: float) -> float:
    """The value below which `fraction` of the (sorted) values lie (nearest rank)."""
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, round(fraction * len(sorted_values)) - 1))
    return sorted_values[rank]
