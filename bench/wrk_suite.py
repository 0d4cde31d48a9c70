"""The performance table in one run: the whole stack under wrk, against pgbench, side by side.

Starts the stack as `make run` does (the launcher: PostgreSQL, moto, localstripe, the four
services, the nginx gateway when nginx is installed) on free ports, in a database of its own
(`--admin-url` / DATABASE_URL names the machine's PostgreSQL; without either the embedded one),
registers and funds `--users` users, then, for `--rounds` rounds side by side:

- pgbench with `../shared/perf/min_transfer.pgbench` (its schema from `min_transfer.sql`);
- wrk `POST /transactions/transfers` on the service's port, then through the gateway;
- wrk `GET /transactions/balance` and that service's `/health/live`;
- wrk `GET /auth/verify` and auth's `/health/live`;

each with `--connections` clients for `--seconds`, reading the CPU time of every process
(/proc/<pid>/stat, its whole process group; PostgreSQL's backends of the database) around each
run. After a transfer run it waits until every event is relayed and every notification sent,
so that one run's backlog does not weigh on the next. Then the sustained rate with
notifications (transfers for `--seconds`, then until the last notification is sent) and the
latency from `POST /payments` to the credit visible in the balance, through the gateway.
Prints the markdown table (medians of the rounds; pgbench's best round) and the CPU per request.

    .venv/bin/python -m bench.wrk_suite                    # DATABASE_URL or embedded PostgreSQL
    .venv/bin/python -m bench.wrk_suite --admin-url postgresql://postgres@127.0.0.1:5432/postgres

    .venv/bin/python -m bench.wrk_suite --tracing          # the services trace every request
    .venv/bin/python -m bench.wrk_suite --otlp-endpoint http://127.0.0.1:4318  # ...to a collector

wrk is the Debian package `wrk` (`apt-get install wrk`). With `--tracing` the services export
their spans over OTLP/HTTP to a sink in this process that answers and discards them (so the
cost measured is the services' own: spans made, batched, serialised and sent);
`--otlp-endpoint` sends them to a collector instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import http.server
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.topups import Samples, worker  # noqa: E402
from bench.transfers_setup import create_users, envelope, log_in  # noqa: E402
from micropay_common.events import PaymentSucceeded, UserRegistered, producer_of  # noqa: E402
from micropay_common.services import SERVICES  # noqa: E402
from stack.launcher import LOCAL_AWS_CREDENTIALS, Stack, StackConfig  # noqa: E402
from stack.postgres import connect  # noqa: E402
from stack.processes import PrefixedOutput  # noqa: E402

WRK_DIR = Path(__file__).resolve().parent / "wrk"


def _perf_dir() -> Path:
    """`../shared/perf` beside the checkout (beside the main one, for a git worktree)."""
    beside = ROOT.parent / "shared" / "perf"
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        common = subprocess.run(
            ["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],  # noqa: S607
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        main_checkout = Path(common).parent
        if not beside.is_dir() and (main_checkout.parent / "shared" / "perf").is_dir():
            return main_checkout.parent / "shared" / "perf"
    return beside


PERF_DIR = _perf_dir()
FUNDING = 100_000_000_000
DATABASE = "micropay_wrk"
TICKS = os.sysconf("SC_CLK_TCK")


# --- CPU time per process -------------------------------------------------------------------


def _stat_fields(pid: int | str) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def group_cpu(pgid: int) -> float:
    """CPU seconds (user + system) of every live process in a process group (workers too)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(entry.name)
        if fields is not None and int(fields[2]) == pgid:
            total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


def pid_cpu(pid: int) -> float:
    """CPU seconds of one process (0 once it is gone)."""
    fields = _stat_fields(pid)
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / TICKS


@dataclass
class CpuMeter:
    """CPU seconds of the stack's processes and of PostgreSQL's backends of its database."""

    stack: Stack
    admin_url: str

    async def backends(self) -> list[int]:
        """PostgreSQL's client backends serving the bench database (readable when local)."""
        conn = await connect(self.admin_url)
        try:
            rows = await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                DATABASE,
            )
        finally:
            await conn.close()
        return [int(row["pid"]) for row in rows]

    async def snapshot(self) -> dict[str, float]:
        """CPU seconds so far: each service, moto, localstripe, nginx, `postgres` (backends)."""
        cpu = {name: group_cpu(pid) for name, pid in self.stack.pids().items()}
        cpu["postgres"] = sum(pid_cpu(pid) for pid in await self.backends())
        return cpu


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds each process used between two snapshots."""
    return {name: max(0.0, after.get(name, 0.0) - before[name]) for name in before}


def _tool(name: str) -> str:
    """The full path of a command-line tool (main() checked that each is installed)."""
    return shutil.which(name) or name


# --- wrk and pgbench ------------------------------------------------------------------------


@dataclass
class WrkResult:
    """What one wrk run reported."""

    rate: float
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def good(self) -> int:
        """Requests answered 2xx/3xx."""
        return self.requests - self.errors


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(url: str, script: str, args: argparse.Namespace, users_file: Path) -> WrkResult:
    """One wrk run of `script` against `url`; its rate, errors and latency percentiles."""
    command = [
        _tool("wrk"),
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{args.seconds}s",
        "--latency",
        "-s",
        str(WRK_DIR / script),
        url,
    ]
    done = subprocess.run(  # noqa: S603
        command,
        capture_output=True,
        text=True,
        env={**os.environ, "WRK_USERS": str(users_file)},
        check=True,
    )
    out = done.stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors_match = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    errors = int(errors_match.group(1)) if errors_match else 0
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    p50 = re.search(r"\s50%\s+([\d.]+\w+)", out)
    p99 = re.search(r"\s99%\s+([\d.]+\w+)", out)
    return WrkResult(
        rate=rate,
        requests=requests,
        errors=errors,
        p50_ms=_ms(p50.group(1)) if p50 else float("nan"),
        p99_ms=_ms(p99.group(1)) if p99 else float("nan"),
    )


def load_pgbench_schema(url: str, perf_dir: Path) -> None:
    """The minimal transfer's schema (perfmin) in the bench database."""
    subprocess.run(  # noqa: S603
        [
            _tool("psql"),
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            url,
            "-f",
            str(perf_dir / "min_transfer.sql"),
        ],
        check=True,
        capture_output=True,
    )


def run_pgbench(url: str, perf_dir: Path, args: argparse.Namespace) -> float:
    """One pgbench round of the minimal durable transfer; its tps."""
    done = subprocess.run(  # noqa: S603
        [
            _tool("pgbench"),
            "-n",
            "-M",
            "prepared",
            "--max-tries=10",
            "-c",
            str(args.connections),
            "-j",
            str(args.threads),
            "-T",
            str(args.seconds),
            "-f",
            str(perf_dir / "min_transfer.pgbench"),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"tps = ([\d.]+)", done.stdout)
    if found is None:
        raise SystemExit(f"pgbench printed no tps:\n{done.stdout}\n{done.stderr}")
    return float(found.group(1))


# --- the stack and its users ----------------------------------------------------------------


def prepare_users(stack: Stack, count: int, path: Path) -> list[tuple[str, str, str]]:
    """`count` users in the Cognito stand-in, registered with every consumer and funded."""
    assert stack.aws is not None
    os.environ.update(LOCAL_AWS_CREDENTIALS)
    users = create_users(stack.aws, count)
    producers = {
        service: log_in(stack.aws, account["username"], account["password"])
        for service, account in stack.aws.service_accounts.items()
    }
    with contextlib.ExitStack() as clients:
        http = {
            name: clients.enter_context(httpx.Client(base_url=url, timeout=30))
            for name, url in stack.service_urls.items()
        }
        for sub, email, _ in users:
            events = (
                UserRegistered(user_id=sub, email=email),
                PaymentSucceeded(
                    payment_id=f"pay_wrk_{uuid.uuid4().hex}",
                    user_id=sub,
                    amount=FUNDING,
                    currency="USD",
                ),
            )
            for event in events:
                body = envelope(event)
                token = producers[producer_of(body["type"])]
                for consumer in event.consumers:
                    answer = http[str(consumer)].post(
                        "/internal/events",
                        json=body,
                        headers={"Authorization": f"Bearer {token}"},
                    )
                    answer.raise_for_status()
    path.write_text("".join(f"{token}\t{email}\n" for _, email, token in users))
    return users


async def backlog(admin_url: str) -> tuple[int, int]:
    """(events not yet relayed in any schema, notifications not yet sent), and sent so far."""
    conn = await connect(admin_url)
    try:
        pending_events = 0
        for spec in SERVICES.values():
            pending_events += int(
                await conn.fetchval(
                    f"SELECT count(*) FROM {spec.schema}.outbox WHERE status = 'pending'"  # noqa: S608
                )
                or 0
            )
        pending = await conn.fetchval(
            "SELECT count(*) FROM notifications.notifications WHERE status = 'pending'"
        )
        return pending_events + int(pending or 0), int(
            await conn.fetchval(
                "SELECT count(*) FROM notifications.notifications WHERE status = 'sent'"
            )
            or 0
        )
    finally:
        await conn.close()


async def drain(admin_url: str, limit: float) -> float:
    """Wait until every event is relayed and every notification sent; seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        pending, _ = await backlog(admin_url)
        if pending == 0:
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    print(f"  the backlog did not drain within {limit:.0f} s", file=sys.stderr)
    return time.monotonic() - started


# --- the measurements -----------------------------------------------------------------------


DURING_BACKLOG = "transfers during backlog"


@dataclass
class Rounds:
    """Each run's results, by what ran."""

    runs: dict[str, list[WrkResult]] = field(default_factory=dict)
    pgbench: list[float] = field(default_factory=list)
    backlog_at_start: list[int] = field(default_factory=list)
    """Events and notifications pending when each round's run during a backlog began."""

    def add(self, name: str, result: WrkResult) -> None:
        """Keep one run's result."""
        self.runs.setdefault(name, []).append(result)

    def median(self, name: str) -> float:
        """The median rate of a run over the rounds."""
        return statistics.median(r.rate for r in self.runs[name]) if name in self.runs else 0.0

    def cpu_ms_per_request(self, name: str) -> dict[str, float]:
        """Median over the rounds of each process's CPU ms per good request."""
        per_round = [
            {proc: 1000 * cpu / r.good for proc, cpu in r.cpu.items()}
            for r in self.runs.get(name, [])
            if r.good
        ]
        if not per_round:
            return {}
        return {proc: statistics.median(d[proc] for d in per_round) for proc in per_round[0]}


async def measured(
    meter: CpuMeter, label: str, run: Callable[[], WrkResult], rounds: Rounds
) -> WrkResult:
    """Run one wrk measurement with CPU snapshots around it, print and keep it."""
    before = await meter.snapshot()
    result = await asyncio.to_thread(run)
    result.cpu = cpu_delta(before, await meter.snapshot())
    rounds.add(label, result)
    errors = f", {result.errors} errors" if result.errors else ""
    print(
        f"  {label:<24} {result.rate:9.1f}/s  p50 {result.p50_ms:6.1f} ms  "
        f"p99 {result.p99_ms:6.1f} ms{errors}",
        file=sys.stderr,
    )
    return result


async def sustained(
    stack: Stack, meter: CpuMeter, admin_url: str, args: argparse.Namespace, users_file: Path
) -> dict[str, float]:
    """Transfers for `--seconds`, then until every notification is sent: rates and CPU."""
    await drain(admin_url, args.drain_timeout)
    _, sent_before = await backlog(admin_url)
    before = await meter.snapshot()
    started = time.monotonic()
    url = f"{stack.service_urls['transactions']}/transactions/transfers"
    result = await asyncio.to_thread(run_wrk, url, "transfer.lua", args, users_file)
    await drain(admin_url, args.drain_timeout)
    elapsed = time.monotonic() - started
    cpu = cpu_delta(before, await meter.snapshot())
    _, sent_after = await backlog(admin_url)
    sent = max(1, sent_after - sent_before)
    return {
        "accepted": result.rate,
        "sustained": result.good / elapsed,
        "notifications": float(sent),
        "notifications_cpu_ms": 1000 * cpu["notifications"] / sent,
        "moto_cpu_ms": 1000 * cpu["moto"] / sent,
        "elapsed": elapsed,
    }


async def topup_latency(stack: Stack, users: list[tuple[str, str, str]], count: int) -> Samples:
    """Sequential top-ups by card through the gateway, each until its credit is visible."""
    base = stack.gateway_url or stack.service_urls["payment"]
    balances = stack.gateway_url or stack.service_urls["transactions"]
    tickets: asyncio.Queue[int] = asyncio.Queue()
    for index in range(count):
        tickets.put_nowait(100 + index)
    samples = Samples()
    async with (
        httpx.AsyncClient(base_url=base, timeout=30) as payments,
        httpx.AsyncClient(base_url=balances, timeout=30) as transactions,
    ):
        deadline = time.monotonic() + 30 + count * 2
        await worker(users[0][2], payments, transactions, tickets, samples, 0.002, deadline)
    return samples


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of unsorted values."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[max(0, min(len(ordered) - 1, round(fraction * len(ordered)) - 1))]


# --- the report -----------------------------------------------------------------------------


def ratio(a: float, b: float) -> str:
    """a/b to two places, or n/a."""
    return f"**{a / b:.2f}**" if b else "n/a"


def report(
    rounds: Rounds,
    sustain: dict[str, float] | None,
    topups: Samples | None,
    args: argparse.Namespace,
    gateway: bool,
) -> str:
    """The markdown tables: the goals, then the CPU per request of each process."""
    best = max(rounds.pgbench) if rounds.pgbench else 0.0
    transfers = rounds.median("transfers")
    via_gateway = rounds.median("transfers via gateway")
    balance, tx_live = rounds.median("balance"), rounds.median("transactions live")
    verify, auth_live = rounds.median("auth verify"), rounds.median("auth live")
    load = os.getloadavg()
    lines = [
        f"{datetime.now(UTC):%d %b %Y %H:%M} UTC, {os.cpu_count()} cores, load average "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the end; {args.connections} clients, "
        f"{args.rounds} rounds of {args.seconds} s, medians; {args.workers} worker(s) per service.",
        "",
        "| what | measured | ratio | goal |",
        "|---|---|---|---|",
    ]
    pg_range = f"{min(rounds.pgbench):,.0f} to {best:,.0f}" if rounds.pgbench else "n/a"
    lines.append(
        f"| pgbench, minimal durable transfer (`../shared/perf/`), best of the rounds "
        f"| {best:,.0f} tps (rounds {pg_range}) | 1 | — |"
    )
    lines.append(
        f"| `POST /transactions/transfers` on the service's port | {transfers:,.0f}/s "
        f"| {ratio(transfers, best)} of pgbench | ≥ 1.0 |"
    )
    if gateway:
        lines.append(
            f"| the same through the gateway (auth_request included) | {via_gateway:,.0f}/s "
            f"| {ratio(via_gateway, best)} of pgbench | ≥ 0.7 |"
        )
    else:
        lines.append("| the same through the gateway | not run: no nginx | — | ≥ 0.7 |")
    lines.append(
        f"| `GET /transactions/balance` against the same service's `/health/live` "
        f"| {balance:,.0f} vs {tx_live:,.0f}/s | {ratio(balance, tx_live)} | ≥ 0.4 |"
    )
    lines.append(
        f"| `GET /auth/verify` against auth's `/health/live` "
        f"| {verify:,.0f} vs {auth_live:,.0f}/s | {ratio(verify, auth_live)} | ≥ 0.85 |"
    )
    if DURING_BACKLOG in rounds.runs:
        during = rounds.median(DURING_BACKLOG)
        waiting = statistics.median(rounds.backlog_at_start)
        lines.append(
            f"| transfers while the previous run's events and notifications drain "
            f"({waiting:,.0f} pending at the start) against transfers with none "
            f"| {during:,.0f} vs {transfers:,.0f}/s | {ratio(during, transfers)} "
            "| reported: a backlog never slows the money path |"
        )
    if sustain:
        lines.append(
            "| notifications service CPU per notification sent (its own process; the SES/SNS "
            f"stand-in excluded) | {sustain['notifications_cpu_ms']:.2f} ms "
            f"(moto: {sustain['moto_cpu_ms']:.2f} ms) | — | ≤ 1 ms |"
        )
        lines.append(
            "| transfers the whole system sustains (until every notification is sent) against "
            f"the rate it accepts | {sustain['sustained']:,.0f} vs {sustain['accepted']:,.0f}/s "
            f"({sustain['notifications']:,.0f} notifications) "
            f"| {ratio(sustain['sustained'], sustain['accepted'])} "
            "| reported, with the stand-ins' share of the CPU |"
        )
    if topups and topups.end_to_end:
        where = "through the gateway" if gateway else "on the services' ports"
        lines.append(
            f"| top-up {where}: credit visible after Stripe's answer (the POST's answer), "
            f"p50 / p99 | {1000 * percentile(topups.after_answer, 0.5):.0f} / "
            f"{1000 * percentile(topups.after_answer, 0.99):.0f} ms (from sending the POST: "
            f"{1000 * percentile(topups.end_to_end, 0.5):.0f} / "
            f"{1000 * percentile(topups.end_to_end, 0.99):.0f} ms; the POST itself, Stripe's "
            f"stand-in included: {1000 * percentile(topups.post, 0.5):.0f} / "
            f"{1000 * percentile(topups.post, 0.99):.0f} ms; {len(topups.end_to_end)} top-ups) "
            "| — | p99 ≤ 50 ms |"
        )
    runs = [name for name in rounds.runs if rounds.cpu_ms_per_request(name)]
    procs = ["auth", "payment", "transactions", "notifications", "postgres", "moto", "gateway"]
    lines += [
        "",
        "CPU per request, ms (median over the rounds; `postgres` is the backends of the "
        "database; every process of the stack counts, so a run's backlog shows up as "
        "notifications and moto CPU):",
        "",
        "| run | " + " | ".join(procs) + " |",
        "|---" * (len(procs) + 1) + "|",
    ]
    for name in runs:
        per = rounds.cpu_ms_per_request(name)
        lines.append(
            f"| {name} | " + " | ".join(f"{per.get(proc, 0.0):.2f}" for proc in procs) + " |"
        )
    errors = {
        name: sum(r.errors for r in results)
        for name, results in rounds.runs.items()
        if any(r.errors for r in results)
    }
    if errors:
        lines += ["", f"Non-2xx answers or socket errors: {errors}"]
    return "\n".join(lines)


@contextlib.contextmanager
def span_sink() -> Iterator[str]:
    """An OTLP/HTTP endpoint on a free port that accepts every export and keeps nothing."""

    class Discard(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Discard)
    thread = threading.Thread(target=server.serve_forever, name="span-sink", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def tracing_env(args: argparse.Namespace) -> Iterator[dict[str, str]]:
    """The services' OTEL_* variables: none (tracing off) unless --tracing or --otlp-endpoint."""
    if args.otlp_endpoint:
        yield {"OTEL_EXPORTER_OTLP_ENDPOINT": args.otlp_endpoint}
    elif args.tracing:
        with span_sink() as endpoint:
            yield {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}
    else:
        yield {}


@contextlib.contextmanager
def running_stack(args: argparse.Namespace, log: Path) -> Iterator[Stack]:
    """The launcher's stack on free ports in a temporary directory, its output in `log`."""
    with (
        tempfile.TemporaryDirectory(prefix="micropay-wrk-") as tmp,
        log.open("w") as sink,
        tracing_env(args) as tracing,
    ):
        config = StackConfig.with_free_ports(
            data_dir=Path(tmp),
            database_url=args.admin_url,
            database_name=DATABASE,
            recreate_database=True,
            log_level=args.log_level,
            workers=args.workers,
            startup_timeout=180.0,
            service_extra_env=tracing,
        )
        stack = Stack(config, output=PrefixedOutput(sink))
        stack.start()
        try:
            yield stack
        finally:
            stack.stop()


async def suite(stack: Stack, args: argparse.Namespace, users_file: Path) -> str:
    """Every measurement of the table, in one run of the stack."""
    assert stack.postgres is not None
    db_url = stack.postgres.url_for(DATABASE)
    admin_url = stack.postgres.url_for("postgres")
    print(f"preparing {args.users} users …", file=sys.stderr)
    users = await asyncio.to_thread(prepare_users, stack, args.users, users_file)
    await drain(db_url, args.drain_timeout)
    load_pgbench_schema(db_url, args.perf_dir)
    meter = CpuMeter(stack, admin_url)
    urls = stack.service_urls
    gateway = stack.gateway_url is not None
    plan: list[tuple[str, str, str, bool]] = [
        ("transfers", f"{urls['transactions']}/transactions/transfers", "transfer.lua", True),
    ]
    if gateway:
        via = f"{stack.gateway_url}/transactions/transfers"
        plan.append(("transfers via gateway", via, "transfer.lua", True))
    plan += [
        ("balance", f"{urls['transactions']}/transactions/balance", "get.lua", False),
        ("transactions live", f"{urls['transactions']}/health/live", "get.lua", False),
        ("auth verify", f"{urls['auth']}/auth/verify", "get.lua", False),
        ("auth live", f"{urls['auth']}/health/live", "get.lua", False),
    ]
    # Warm every path up (JIT-free Python still fills caches: tokens, statements, pools).
    for _, url, script, _ in plan:
        warm = argparse.Namespace(**{**vars(args), "seconds": 1})
        await asyncio.to_thread(run_wrk, url, script, warm, users_file)
    await drain(db_url, args.drain_timeout)
    rounds = Rounds()
    for number in range(1, args.rounds + 1):
        print(f"round {number}/{args.rounds}", file=sys.stderr)
        rounds.pgbench.append(await asyncio.to_thread(run_pgbench, db_url, args.perf_dir, args))
        print(f"  {'pgbench':<24} {rounds.pgbench[-1]:9.1f} tps", file=sys.stderr)
        for label, url, script, moves_money in plan:
            run = functools.partial(run_wrk, url, script, args, users_file)
            await measured(meter, label, run, rounds)
            if label == "transfers":
                # The same again at once, while the first run's events and notifications are
                # still being relayed and sent: what a backlog costs the money path.
                waiting, _ = await backlog(db_url)
                rounds.backlog_at_start.append(waiting)
                await measured(meter, DURING_BACKLOG, run, rounds)
            if moves_money:
                waited = await drain(db_url, args.drain_timeout)
                print(f"  {'(backlog drained in)':<24} {waited:9.1f} s", file=sys.stderr)
    sustain = None
    if not args.skip_sustained:
        print("sustained rate with notifications …", file=sys.stderr)
        sustain = await sustained(stack, meter, db_url, args, users_file)
    topups = None
    if args.topups:
        print(f"{args.topups} top-ups one after the other …", file=sys.stderr)
        topups = await topup_latency(stack, users, args.topups)
        if topups.failures:
            print(f"  top-up failures: {topups.failures[:3]}", file=sys.stderr)
    return report(rounds, sustain, topups, args, gateway)


def main(argv: list[str] | None = None) -> None:
    """Parse the options, start the stack, measure, print the table."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.wrk_suite", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--admin-url",
        default=os.environ.get("DATABASE_URL"),
        help="admin URL of the PostgreSQL to use [DATABASE_URL; else the embedded server]",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10, help="each run's length")
    parser.add_argument("--connections", type=int, default=16, help="clients (wrk -c, pgbench -c)")
    parser.add_argument("--threads", type=int, default=2, help="wrk -t and pgbench -j")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers per service")
    parser.add_argument("--log-level", default="INFO", help="the services' LOG_LEVEL")
    parser.add_argument("--topups", type=int, default=50, help="0 skips the top-up latency")
    parser.add_argument("--skip-sustained", action="store_true")
    parser.add_argument("--drain-timeout", type=float, default=300.0)
    parser.add_argument(
        "--perf-dir", type=Path, default=PERF_DIR, help="where min_transfer.* are [%(default)s]"
    )
    parser.add_argument("--log", type=Path, default=ROOT / ".data" / "bench" / "wrk-suite.log")
    parser.add_argument(
        "--tracing",
        action="store_true",
        help="the services trace, exporting to a sink here that discards the spans",
    )
    parser.add_argument(
        "--otlp-endpoint", help="the services trace, exporting to this OTLP/HTTP collector"
    )
    args = parser.parse_args(argv)
    missing = [tool for tool in ("wrk", "pgbench", "psql") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(
            f"{', '.join(missing)} not found: on Debian or Ubuntu, `apt-get install wrk "
            "postgresql-client` (wrk is the C load generator; pgbench and psql come with the "
            "PostgreSQL client)"
        )
    if not (args.perf_dir / "min_transfer.pgbench").is_file():
        raise SystemExit(f"{args.perf_dir}/min_transfer.pgbench not found (--perf-dir)")
    args.log.parent.mkdir(parents=True, exist_ok=True)
    print(f"starting the stack (its output in {args.log}) …", file=sys.stderr)
    with running_stack(args, args.log) as stack, tempfile.TemporaryDirectory() as tmp:
        table = asyncio.run(suite(stack, args, Path(tmp) / "users.tsv"))
    print(table)


if __name__ == "__main__":
    main()
