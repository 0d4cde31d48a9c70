"""The caller's CPU per request of `micropay_common.http.ServiceClient`, the client the outbox
relay posts every event with.

Starts a keep-alive HTTP server in a process of its own that answers every request at once
(`{"status": "applied"}`, as a consumer's inbox does), then posts `--requests` event envelopes
to it through a `ServiceClient` under uvloop, `--in-flight` at a time, after 200 to warm up;
prints this process's CPU per request (best of `--rounds`). `--source DIR` imports the shared
package from another tree (`git archive <commit> common | tar -x -C DIR`), so the client before
a change is measured by the same script. Run from the root:

    .venv/bin/python -m bench.service_client
    .venv/bin/python -m bench.service_client --source /tmp/before
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ANSWER = b'{"status":"applied"}'
# Nothing of the project is imported before `--source` is on the path.


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.05)
    raise SystemExit(f"the server on port {port} did not start")


async def _serve(port: int) -> None:
    """Answer every request on kept connections with ANSWER, at once."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if length:
                    await reader.readexactly(length)
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\n\r\n%s" % (len(ANSWER), ANSWER)
                )
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


class _Tokens:
    """A service token of an access token's length; never refused."""

    async def token(self) -> str:
        return "x" * 1000

    def invalidate(self) -> None:
        pass


def _envelope() -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "type": "transfer.completed",
        "occurred_at": "2026-12-03T07:00:00Z",
        "producer": "transactions",
        "data": {
            "transfer_id": str(uuid.uuid4()),
            "from_user_id": str(uuid.uuid4()),
            "from_email": "ana@example.com",
            "to_user_id": str(uuid.uuid4()),
            "to_email": "bob@example.com",
            "amount": 1200,
            "currency": "USD",
        },
    }


async def _round(url: str, requests: int, in_flight: int) -> float:
    from micropay_common.http import ServiceClient

    client = ServiceClient(url, _Tokens(), timeout=10)  # type: ignore[arg-type]
    bodies = [_envelope() for _ in range(requests + 200)]

    async def post(body: dict[str, Any]) -> None:
        response = await client.post("/internal/events", json=body)
        assert response.status_code == 200

    for body in bodies[:200]:
        await post(body)
    started = time.process_time()
    for start in range(200, len(bodies), in_flight):
        await asyncio.gather(*(post(body) for body in bodies[start : start + in_flight]))
    spent = time.process_time() - started
    await client.aclose()
    return spent


def main() -> None:
    """Start the server, measure each number in flight, stop the server."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--in-flight", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--source", type=Path, help="import the shared package from DIR/common")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.serve))
        return
    if args.source:
        sys.path.insert(0, str((args.source / "common").resolve()))
    import uvloop

    import micropay_common

    port = _free_port()
    server = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "bench.service_client", "--serve", str(port)],
        stdout=subprocess.DEVNULL,
    )
    try:
        _wait_for(port)
        print(f"shared package: {micropay_common.__file__}")
        for in_flight in args.in_flight:
            spent = [
                uvloop.run(_round(f"http://127.0.0.1:{port}", args.requests, in_flight))
                for _ in range(args.rounds)
            ]
            best = min(spent)
            print(
                f"{args.requests} POSTs, {in_flight} in flight: "
                f"{best / args.requests * 1000:.3f} ms of CPU per request "
                f"(rounds: {', '.join(f'{1000 * s / args.requests:.3f}' for s in spent)})"
            )
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
