"""Command line of the local stack: `python -m stack run` is what `make run` does."""

from __future__ import annotations

import time

_STARTED = time.monotonic()

import argparse  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402
from types import FrameType  # noqa: E402
from typing import Any  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    """Arguments of `python -m stack`."""
    parser = argparse.ArgumentParser(prog="python -m stack", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run",
        help="start PostgreSQL, moto, localstripe, the PayPal stand-in, the four services and "
        "the gateway",
        description=(
            "Start the whole stack in the foreground; Ctrl-C stops it. Every option also has "
            "an environment variable (in brackets); the option wins."
        ),
    )
    run.add_argument("--gateway-port", type=int, help="nginx gateway [MICROPAY_GATEWAY_PORT, 8080]")
    run.add_argument(
        "--service-port",
        type=int,
        help="auth's port; payment, transactions, notifications take the next three "
        "[MICROPAY_SERVICE_PORT, 8001]",
    )
    run.add_argument("--moto-port", type=int, help="moto server [MICROPAY_MOTO_PORT, 4566]")
    run.add_argument(
        "--localstripe-port", type=int, help="localstripe [MICROPAY_LOCALSTRIPE_PORT, 8420]"
    )
    run.add_argument(
        "--paypal-port", type=int, help="the PayPal stand-in [MICROPAY_PAYPAL_PORT, 8430]"
    )
    run.add_argument("--database", help="database name [MICROPAY_DATABASE, micropay]")
    run.add_argument(
        "--data-dir",
        type=Path,
        help="generated files and the embedded PostgreSQL [MICROPAY_DATA_DIR, .data]",
    )
    run.add_argument(
        "--fresh", action="store_true", help="drop and recreate the database before starting"
    )
    run.add_argument("--no-gateway", action="store_true", help="do not start nginx")
    run.add_argument("--log-level", help="services' log level [LOG_LEVEL, INFO]")
    run.add_argument(
        "--workers",
        type=int,
        help="uvicorn worker processes per service, one per core at most [MICROPAY_WORKERS, 1]",
    )
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    chosen: dict[str, Any] = {
        "gateway_port": args.gateway_port,
        "service_port": args.service_port,
        "moto_port": args.moto_port,
        "localstripe_port": args.localstripe_port,
        "paypal_port": args.paypal_port,
        "database_name": args.database,
        "data_dir": args.data_dir.resolve() if args.data_dir else None,
        "log_level": args.log_level,
        "workers": args.workers,
    }
    overrides = {name: value for name, value in chosen.items() if value is not None}
    if args.fresh:
        overrides["recreate_database"] = True
    if args.no_gateway:
        overrides["gateway"] = False
    return overrides


def run(args: argparse.Namespace) -> int:
    """Start the stack, report where everything is, and stop it on SIGINT/SIGTERM."""
    from stack.launcher import ROOT, ChildExitedError, Stack, StackConfig, StackError
    from stack.processes import PrefixedOutput

    output = PrefixedOutput()
    try:
        config = StackConfig.from_env(**_overrides(args))
    except StackError as exc:
        print(f"micropay: {exc}", file=sys.stderr)
        return 2
    stack = Stack(config, output=output)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        if not stop.is_set():
            output.message(f"\n{signal.Signals(signum).name}: stopping MicroPay ...")
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, request_stop)

    database = (
        "PostgreSQL at DATABASE_URL"
        if config.database_url
        else f"embedded PostgreSQL in {_shown(stack.postgres_dir, ROOT)}"
    )
    output.message(
        f"Starting MicroPay: {database}, moto, localstripe, PayPal, four services, gateway"
    )
    try:
        stack.start(abort=stop)
    except ChildExitedError as exc:
        print(f"\nmicropay: start-up failed: {exc}", file=sys.stderr)
        return 1
    except StackError as exc:
        if stop.is_set():
            output.message("Stopped before everything was ready.")
            return 0
        print(f"\nmicropay: start-up failed: {exc}", file=sys.stderr)
        return 1
    except Exception:
        traceback.print_exc()
        print("\nmicropay: start-up failed (see above); everything is stopped.", file=sys.stderr)
        return 1

    output.message(_summary(stack, time.monotonic() - _STARTED, ROOT))
    exited = stack.wait(stop)
    if exited is not None:
        failure = ChildExitedError(exited, "while running")
        output.message(f"\nmicropay: {failure}\nStopping everything else ...")
        stack.stop()
        return 1
    stack.stop()
    output.message("MicroPay stopped.")
    return 0


def _shown(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _summary(stack: Any, elapsed: float, root: Path) -> str:
    from stack.launcher import SERVICES

    width = 15
    lines = ["", f"MicroPay is ready ({elapsed:.1f} s from start)."]
    if stack.gateway_url:
        lines.append(f"  {'gateway':<{width}}{stack.gateway_url}")
        web = getattr(stack, "web_skipped_reason", None)
        app = web or f"{stack.gateway_url}/"
        lines.append(f"  {'wallet app':<{width}}{app}")
    else:
        lines.append(f"  {'gateway':<{width}}not running: {stack.gateway_skipped_reason}")
    for service, url in stack.service_urls.items():
        via = f"   (through the gateway: {stack.gateway_url}{SERVICES[service].prefix}/docs)"
        lines.append(f"  {service:<{width}}{url}/docs{via if stack.gateway_url else ''}")
    lines.append(f"  {'moto (AWS)':<{width}}{stack.moto_url}")
    lines.append(f"  {'localstripe':<{width}}{stack.localstripe_url}")
    lines.append(f"  {'PayPal':<{width}}{stack.paypal_url} (stand-in)")
    lines.append(f"  {'environment':<{width}}{_shown(stack.env_file, root)} (source it in a shell)")
    lines.append("Press Ctrl-C to stop.")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m stack`."""
    args = build_parser().parse_args(argv)
    if args.command == "run":
        return run(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
