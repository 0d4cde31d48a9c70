"""What authentication costs per request: GET /auth/verify against GET /health/live.

Starts what the auth service needs on free ports (PostgreSQL: DATABASE_URL or the embedded
server; a moto server; the auth service under uvicorn, one worker), registers and signs in a
user, then loads the two endpoints of that one process in alternating rounds, side by side in
one run, and prints requests per second of each and their ratio. Run by hand from the root:

    .venv/bin/python -m bench.auth_verify                    # 3 rounds of 5 s per endpoint
    .venv/bin/python -m bench.auth_verify --rounds 5 --seconds 10 --connections 32

The load generator is a small asyncio HTTP/1.1 keep-alive client (much lighter than a full
HTTP library, so it is not the bottleneck it would be); it shares the machine with the service,
so compare the ratio, not the absolute numbers, between machines.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

from stack.bootstrap import bootstrap_aws
from stack.launcher import free_port
from stack.postgres import drop_database, prepare_database, start_postgres

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / ".data"
PASSWORD = "Bench-Password-1"  # noqa: S105  (a throw-away local user)


async def _request_loop(
    port: int, request: bytes, deadline: float, counts: list[int], errors: list[int]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.monotonic() < deadline:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            if status == 200:
                counts[0] += 1
            else:
                errors[0] += 1
    finally:
        writer.close()


async def measure(port: int, path: str, token: str, seconds: float, connections: int) -> float:
    """Requests per second of `path` with `connections` keep-alive connections."""
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n"
    ).encode()
    counts, errors = [0], [0]
    started = time.monotonic()
    deadline = started + seconds
    await asyncio.gather(
        *(_request_loop(port, request, deadline, counts, errors) for _ in range(connections))
    )
    elapsed = time.monotonic() - started
    if errors[0]:
        raise SystemExit(f"{path}: {errors[0]} answers were not 200")
    return counts[0] / elapsed


def _wait(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{process.args!r} exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer within {timeout}s")


async def measure_rounds(
    port: int, token: str, rounds: int, seconds: float, connections: int
) -> dict[str, list[float]]:
    """Alternate the two endpoints, `rounds` times each, after a short warm-up."""
    # Warm up both paths (JWKS cache, connection pools, code paths).
    for path in ("/health/live", "/auth/verify"):
        await measure(port, path, token, 1.0, connections)
    results: dict[str, list[float]] = {"/health/live": [], "/auth/verify": []}
    for round_number in range(1, rounds + 1):
        for path, rates in results.items():
            rate = await measure(port, path, token, seconds, connections)
            rates.append(rate)
            print(f"round {round_number}: {path:<13} {rate:8.0f} req/s", flush=True)
    return results


def sign_in(base: str) -> str:
    """Register a user through the API and return its access token."""
    credentials = {"email": f"bench-{uuid.uuid4().hex[:8]}@example.com", "password": PASSWORD}
    with httpx.Client(base_url=base, timeout=30, trust_env=False) as client:
        client.post("/auth/register", json=credentials).raise_for_status()
        login = client.post("/auth/login", json=credentials)
        login.raise_for_status()
        token = str(login.json()["access_token"])
        check = client.get("/auth/verify", headers={"Authorization": f"Bearer {token}"})
        if check.status_code != 200:
            raise SystemExit(f"/auth/verify refused the token: {check.text}")
    return token


def spawn(command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start a helper process with its output in `log`."""
    with log.open("wb") as output:
        return subprocess.Popen(  # noqa: S603
            command, env=env, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT
        )


def run(args: argparse.Namespace) -> None:
    """Start the pieces, sign in, measure, print, stop."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    server = start_postgres(DATA_DIR / "postgres", os.environ.get("DATABASE_URL"))
    database = f"micropay_bench_{os.getpid()}"
    urls = asyncio.run(
        prepare_database(server, database, DATA_DIR / "role-passwords.json", recreate=True)
    )
    moto_port, auth_port, nowhere = free_port(), free_port(), free_port()
    logs = DATA_DIR / "bench-logs"
    logs.mkdir(parents=True, exist_ok=True)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        moto = spawn(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
            logs / "moto.log",
            dict(os.environ),
        )
        processes.append(moto)
        moto_url = f"http://127.0.0.1:{moto_port}"
        _wait(f"{moto_url}/moto-api/", moto)
        aws = bootstrap_aws(endpoint_url=moto_url)
        env = {
            **os.environ,
            **aws.service_env("auth"),
            "DATABASE_URL": urls["auth"],
            "AWS_ENDPOINT_URL": moto_url,
            "AUTH_AUTO_CONFIRM": "true",
            "LOG_LEVEL": args.log_level,
            "TRANSACTIONS_URL": f"http://127.0.0.1:{nowhere}",
            "NOTIFICATIONS_URL": f"http://127.0.0.1:{nowhere}",
            "PAYMENT_URL": f"http://127.0.0.1:{nowhere}",
        }
        command = [
            sys.executable, "-m", "uvicorn", "auth_microservice.main:app",
            "--host", "127.0.0.1", "--port", str(auth_port), "--no-access-log",
        ]  # fmt: skip
        auth = spawn(command, logs / "auth.log", env)
        processes.append(auth)
        base = f"http://127.0.0.1:{auth_port}"
        _wait(f"{base}/health/ready", auth)
        token = sign_in(base)
        results = asyncio.run(
            measure_rounds(auth_port, token, args.rounds, args.seconds, args.connections)
        )
        live = statistics.median(results["/health/live"])
        verify = statistics.median(results["/auth/verify"])
        print()
        print(f"median GET /health/live : {live:8.0f} req/s")
        print(f"median GET /auth/verify : {verify:8.0f} req/s")
        print(f"verify/live ratio       : {verify / live:8.2f}")
        print(f"cost of authentication  : {1000 / verify - 1000 / live:8.3f} ms per request")
    finally:
        for process in reversed(processes):
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        asyncio.run(drop_database(server, database))


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds per endpoint (3)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of a round (5)")
    parser.add_argument(
        "--log-level", default="INFO", help="the service's LOG_LEVEL (INFO, as deployed)"
    )
    parser.add_argument("--connections", type=int, default=16, help="keep-alive connections (16)")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
