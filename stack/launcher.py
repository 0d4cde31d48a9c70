"""The local MicroPay stack as one object: PostgreSQL, moto, localstripe, the PayPal stand-in,
four services, nginx.

    stack = Stack(StackConfig.with_free_ports(data_dir=tmp_path))
    stack.start()          # blocks until every part answers; raises StackError otherwise
    ...                    # stack.gateway_url, stack.service_urls, stack.service_env("payment")
    stack.stop()           # stops every process it started, the embedded PostgreSQL included

`python -m stack run` is the command-line front end (see stack/__main__.py).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import shlex
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import httpx

from micropay_common.services import SERVICES as REGISTRY
from micropay_common.services import Service, ServiceName
from stack.bootstrap import (
    AwsResources,
    bootstrap_aws,
    register_paypal_webhook,
    register_stripe_webhook,
)
from stack.gateway import check_nginx_config, find_nginx, nginx_command, write_nginx_config
from stack.paypal_server import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from stack.postgres import PostgresServer, prepare_database, start_postgres
from stack.processes import (
    ManagedProcess,
    OutputSink,
    PrefixedOutput,
    process_alive,
    stop_processes,
)
from stack.web import DIST as WEB_DIST
from stack.web import WebBuildError, build_web_app

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
# The services, their packages, ports, prefixes and URL variables: micropay_common.services.
SERVICES: dict[str, Service] = {str(name): spec for name, spec in REGISTRY.items()}
LOCAL_AWS_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
STRIPE_TEST_KEY = "sk_test_local"
STRIPE_PUBLISHABLE_TEST_KEY = "pk_test_local"
"""localstripe accepts any pk_ key from Stripe.js in the browser."""
PAYPAL_CLIENT_ID = DEFAULT_CLIENT_ID
PAYPAL_CLIENT_SECRET = DEFAULT_CLIENT_SECRET
LOCAL_SIGNUP_LIMITS = {
    "SIGNUP_MAX_PER_IP": "100000",
    "CONFIRM_MAX_ATTEMPTS_PER_IP": "100000",
    "RESEND_MAX_PER_IP": "100000",
}
"""The auth service's per-address sign-up limits on a laptop, where every client (the demo, the
e2e suite, a developer) is 127.0.0.1. The gateway's own limit_req still applies in front, and
the per-email limits keep their defaults."""
# Variables of the developer's shell that would make boto3 ignore the local credentials.
_AWS_SHADOWING_VARIABLES = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
)
# The admin DATABASE_URL of the developer's shell is not meant for the services.
_NOT_INHERITED = (*_AWS_SHADOWING_VARIABLES, "DATABASE_URL")

T = TypeVar("T")


class StackError(RuntimeError):
    """The stack could not start; everything it had started is stopped again."""


class PortInUseError(StackError):
    """A port the stack needs is taken by another process."""


class StackInterrupted(StackError):
    """start() was asked to give up (Ctrl-C or SIGTERM during start-up)."""


class ChildExitedError(StackError):
    """A child process exited; the message carries its last lines of output."""

    def __init__(self, process: ManagedProcess, when: str) -> None:
        self.process = process
        tail = "\n".join(f"    {line}" for line in process.tail()[-30:]) or "    (no output)"
        super().__init__(
            f"{process.name} exited with status {process.returncode} {when}; "
            f"its last output:\n{tail}"
        )


def _port_offset(spec: Service) -> int:
    """How far a service's port lies from auth's, the first of the block."""
    return spec.port - REGISTRY[ServiceName.AUTH].port


_PORT_SPAN = max(_port_offset(spec) for spec in REGISTRY.values()) + 1


def _env_int(environ: Mapping[str, str], name: str, default: int) -> int:
    value = environ.get(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise StackError(f"{name} must be a whole number, got {value!r}") from None


@dataclass(frozen=True)
class StackConfig:
    """Everything that can differ between two stacks on one machine."""

    data_dir: Path = ROOT / ".data"
    database_url: str | None = None
    """Admin URL of an existing PostgreSQL; None starts the embedded one in `postgres_dir`."""
    database_name: str = "micropay"
    postgres_dir: Path | None = None
    """Embedded PostgreSQL data directory; defaults to `data_dir/postgres`."""
    role_passwords_file: Path | None = None
    """Where the service roles' passwords are kept; defaults to `data_dir/role-passwords.json`."""
    recreate_database: bool = False
    gateway_port: int = 8080
    service_port: int = REGISTRY[ServiceName.AUTH].port
    """Port of auth; the others keep their registered distance from it (the next three)."""
    moto_port: int = 4566
    localstripe_port: int = 8420
    paypal_port: int = 8430
    """The PayPal stand-in (stack/paypal_server.py)."""
    gateway: bool = True
    """Run the nginx gateway (skipped with a message when nginx is not installed)."""
    nginx_binary: str | None = None
    """nginx to run; None looks in PATH and the usual sbin directories."""
    log_level: str = "INFO"
    workers: int = 1
    """uvicorn worker processes per service (`--workers`): one event loop per core."""
    service_extra_env: Mapping[str, str] = field(default_factory=dict)
    """Added to every service's environment (for example DB_POOL_SIZE), after the rest."""
    startup_timeout: float = 60.0
    stop_timeout: float = 10.0
    python: str = sys.executable

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise StackError(f"a service needs at least one worker process, not {self.workers}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> StackConfig:
        """Defaults, then MICROPAY_* / DATABASE_URL / LOG_LEVEL variables, then `overrides`."""
        env = os.environ if environ is None else environ
        data_dir = Path(env["MICROPAY_DATA_DIR"]) if env.get("MICROPAY_DATA_DIR") else None
        config = cls(
            data_dir=(data_dir or cls.data_dir).resolve(),
            database_url=env.get("DATABASE_URL") or None,
            database_name=env.get("MICROPAY_DATABASE") or cls.database_name,
            gateway_port=_env_int(env, "MICROPAY_GATEWAY_PORT", cls.gateway_port),
            service_port=_env_int(env, "MICROPAY_SERVICE_PORT", cls.service_port),
            moto_port=_env_int(env, "MICROPAY_MOTO_PORT", cls.moto_port),
            localstripe_port=_env_int(env, "MICROPAY_LOCALSTRIPE_PORT", cls.localstripe_port),
            paypal_port=_env_int(env, "MICROPAY_PAYPAL_PORT", cls.paypal_port),
            nginx_binary=env.get("MICROPAY_NGINX") or None,
            log_level=env.get("LOG_LEVEL") or cls.log_level,
            workers=_env_int(env, "MICROPAY_WORKERS", cls.workers),
        )
        return replace(config, **overrides)

    @classmethod
    def with_free_ports(cls, **overrides: Any) -> StackConfig:
        """A configuration on ports that are free right now (for tests and a second stack)."""
        service_port = free_port_block(_PORT_SPAN)
        taken = set(range(service_port, service_port + _PORT_SPAN))
        ports: dict[str, int] = {"service_port": service_port}
        for name in ("gateway_port", "moto_port", "localstripe_port", "paypal_port"):
            ports[name] = free_port(exclude=taken)
            taken.add(ports[name])
        return cls(**{**ports, **overrides})

    @property
    def service_ports(self) -> dict[str, int]:
        """Port of each service."""
        return {name: self.service_port + _port_offset(spec) for name, spec in SERVICES.items()}

    def ports(self) -> dict[str, int]:
        """Every port the stack listens on, by what listens there."""
        ports = {
            "moto": self.moto_port,
            "localstripe": self.localstripe_port,
            "paypal": self.paypal_port,
        }
        ports.update(self.service_ports)
        if self.gateway:
            ports["gateway"] = self.gateway_port
        return ports


def port_is_free(port: int, host: str = HOST) -> bool:
    """Whether a server could listen on host:port now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Same option the servers use, so a port in TIME_WAIT from a previous run counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _listening_port_range() -> range:
    """Ports to listen on: below the range the OS hands out to outgoing connections.

    A port picked from the ephemeral range can be taken by any client socket (a test's, a
    service's connection to PostgreSQL) between the pick and the server's bind.
    """
    first_ephemeral = 32768
    with contextlib.suppress(OSError, ValueError):
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        first_ephemeral = int(text[0])
    return range(max(1024, first_ephemeral - 12000), first_ephemeral)


def free_port(exclude: Iterable[int] = ()) -> int:
    """A port on 127.0.0.1 that nothing listens on now, outside the ephemeral range."""
    return free_port_block(1, exclude=exclude)


def free_port_block(count: int, *, exclude: Iterable[int] = ()) -> int:
    """First of `count` consecutive free ports, outside the ephemeral range."""
    excluded = set(exclude)
    candidates = _listening_port_range()
    rng = secrets.SystemRandom()
    for _ in range(500):
        first = rng.randrange(candidates.start, candidates.stop - count)
        block = range(first, first + count)
        if excluded.isdisjoint(block) and all(port_is_free(port) for port in block):
            return first
    raise StackError(f"found no {count} consecutive free ports")


def check_ports(config: StackConfig) -> None:
    """Raise PortInUseError naming every port that is taken (or used twice in the config)."""
    ports = config.ports()
    seen: dict[int, str] = {}
    problems: list[str] = []
    for name, port in ports.items():
        if port in seen:
            problems.append(f"port {port} is configured for both {seen[port]} and {name}")
        seen[port] = name
    for name, port in ports.items():
        if not 0 < port < 65536:
            problems.append(f"{port} ({name}) is not a port number")
        elif not port_is_free(port):
            problems.append(f"port {port} ({name}) on {HOST} is already in use")
    if problems:
        hint = (
            "Stop what is using it (another `make run`?) or choose other ports with "
            "--gateway-port/--service-port/--moto-port/--localstripe-port/--paypal-port "
            "(or MICROPAY_GATEWAY_PORT, MICROPAY_SERVICE_PORT, MICROPAY_MOTO_PORT, "
            "MICROPAY_LOCALSTRIPE_PORT, MICROPAY_PAYPAL_PORT)."
        )
        raise PortInUseError("; ".join(problems) + ".\n" + hint)


def _run_coroutine(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion, also when called from inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


@contextlib.contextmanager
def _local_aws_env() -> Iterator[None]:
    """boto3 in this process talks to moto with the local credentials, then the env is restored."""
    changes: dict[str, str | None] = dict.fromkeys(_AWS_SHADOWING_VARIABLES)
    changes.update(LOCAL_AWS_CREDENTIALS)
    changes["NO_PROXY"] = _no_proxy(os.environ.get("NO_PROXY"))
    saved = {name: os.environ.get(name) for name in changes}
    try:
        for name, value in changes.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _no_proxy(existing: str | None) -> str:
    """NO_PROXY that keeps loopback traffic away from any HTTP proxy the developer has set."""
    entries = [e for e in (existing or "").split(",") if e.strip()]
    for local in ("127.0.0.1", "localhost"):
        if local not in entries:
            entries.append(local)
    return ",".join(entries)


def _forget_dead_postgres_users(pgdata: Path) -> None:
    """Drop pids of exited processes from pgserver's list of users of the embedded server.

    pgserver stops the server when the last process in that list exits; a launcher that was
    killed (SIGKILL) never removes itself, and the server would then never stop again.
    """
    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return
    try:
        from pgserver.postgres_server import PostgresServer as EmbeddedServer
    except ImportError:
        return
    with EmbeddedServer._lock:
        try:
            pids = [int(pid) for pid in json.loads(handles.read_text())]
        except (ValueError, TypeError, OSError):
            return
        alive = [pid for pid in pids if process_alive(pid)]
        if alive != pids:
            handles.write_text(json.dumps(alive))


def _embedded_open_in_this_process(pgdata: Path) -> bool:
    try:
        from pgserver.postgres_server import PostgresServer as EmbeddedServer
    except ImportError:
        return False
    return pgdata.resolve() in EmbeddedServer._instances


def _write_env_file(path: Path, values: Mapping[str, str], header: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created with owner-only permissions before any secret is written into it.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(header)
        for name, value in values.items():
            handle.write(f"export {name}={shlex.quote(value)}\n")
    path.chmod(0o600)


@dataclass
class Stack:
    """A running (or startable) local stack; see the module docstring."""

    config: StackConfig = field(default_factory=StackConfig.from_env)
    output: OutputSink = field(default_factory=PrefixedOutput)

    processes: dict[str, ManagedProcess] = field(default_factory=dict, init=False)
    postgres: PostgresServer | None = field(default=None, init=False)
    database_urls: dict[str, str] = field(default_factory=dict, init=False)
    aws: AwsResources | None = field(default=None, init=False)
    webhook_secret: str = field(default="", init=False)
    paypal_webhook_id: str = field(default="", init=False)
    gateway_url: str | None = field(default=None, init=False)
    gateway_skipped_reason: str | None = field(default=None, init=False)
    web_skipped_reason: str | None = field(default=None, init=False)
    ready_seconds: float | None = field(default=None, init=False)
    _owns_postgres: bool = field(default=False, init=False)
    _stopped: bool = field(default=False, init=False)
    _abort: threading.Event | None = field(default=None, init=False)

    # --- addresses ---------------------------------------------------------------------------
    @property
    def service_urls(self) -> dict[str, str]:
        """Base URL of each service on its own port."""
        return {name: f"http://{HOST}:{port}" for name, port in self.config.service_ports.items()}

    @property
    def moto_url(self) -> str:
        """moto server (AWS endpoint)."""
        return f"http://{HOST}:{self.config.moto_port}"

    @property
    def localstripe_url(self) -> str:
        """localstripe (Stripe API base)."""
        return f"http://{HOST}:{self.config.localstripe_port}"

    @property
    def paypal_url(self) -> str:
        """The PayPal stand-in (PayPal API base, and the buyer's approval pages)."""
        return f"http://{HOST}:{self.config.paypal_port}"

    @property
    def env_file(self) -> Path:
        """The generated environment a developer can source."""
        return self.config.data_dir / "local.env"

    @property
    def postgres_dir(self) -> Path:
        """Data directory of the embedded PostgreSQL."""
        return (self.config.postgres_dir or self.config.data_dir / "postgres").resolve()

    # --- environment -------------------------------------------------------------------------
    def _base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}
        env.update(LOCAL_AWS_CREDENTIALS)
        env["PYTHONUNBUFFERED"] = "1"
        env["NO_PROXY"] = env["no_proxy"] = _no_proxy(env.get("NO_PROXY") or env.get("no_proxy"))
        return env

    def service_env(self, service: str) -> dict[str, str]:
        """The MicroPay variables one service is started with."""
        if self.aws is None or not self.database_urls:
            raise StackError("the stack has not been bootstrapped yet")
        env: dict[str, str] = {
            "DATABASE_URL": self.database_urls[service],
            **self.aws.service_env(service),
            **LOCAL_AWS_CREDENTIALS,
            "AWS_DEFAULT_REGION": self.aws.region,
            "AWS_ENDPOINT_URL": self.moto_url,
            "LOG_LEVEL": self.config.log_level,
        }
        env.update({SERVICES[name].url_variable: url for name, url in self.service_urls.items()})
        if service == "auth":
            env["AUTH_AUTO_CONFIRM"] = "true"
            env.update(LOCAL_SIGNUP_LIMITS)
        elif service == "payment":
            env["STRIPE_API_KEY"] = STRIPE_TEST_KEY
            env["STRIPE_API_BASE"] = self.localstripe_url
            env["STRIPE_WEBHOOK_SECRET"] = self.webhook_secret
            env.update(self.paypal_env())
        elif service == "transactions":
            env["DEFAULT_CURRENCY"] = "USD"
        elif service == "notifications":
            env["SES_SENDER"] = self.aws.ses_sender
            env["SNS_TOPIC_ARN"] = self.aws.sns_topic_arn
            # Webhook receivers on a laptop listen on 127.0.0.1.
            env["WEBHOOKS_ALLOW_PRIVATE_URLS"] = "true"
            # moto answers GetSendQuota with SES's sandbox rate (1/s), not a real limit.
            env["SES_MAX_SEND_RATE"] = "1000"
        env.update(self.config.service_extra_env)
        return env

    def paypal_env(self) -> dict[str, str]:
        """The payment service's PayPal settings: the stand-in and its webhook."""
        return {
            "PAYPAL_CLIENT_ID": PAYPAL_CLIENT_ID,
            "PAYPAL_CLIENT_SECRET": PAYPAL_CLIENT_SECRET,
            "PAYPAL_WEBHOOK_ID": self.paypal_webhook_id,
            "PAYPAL_API_BASE": self.paypal_url,
        }

    def shared_env(self) -> dict[str, str]:
        """What every service shares, plus each one's own secrets under a SERVICE_ prefix."""
        assert self.aws is not None
        assert self.postgres is not None
        env: dict[str, str] = {}
        if self.gateway_url:
            env["GATEWAY_URL"] = self.gateway_url
        env.update({SERVICES[name].url_variable: url for name, url in self.service_urls.items()})
        env.update(
            {
                **LOCAL_AWS_CREDENTIALS,
                "AWS_REGION": self.aws.region,
                "AWS_DEFAULT_REGION": self.aws.region,
                "AWS_ENDPOINT_URL": self.moto_url,
                "COGNITO_USER_POOL_ID": self.aws.user_pool_id,
                "COGNITO_CLIENT_ID": self.aws.client_id,
                "COGNITO_CLIENT_SECRET": self.aws.client_secret,
                "COGNITO_ISSUER": self.aws.issuer,
                "COGNITO_JWKS_URL": self.aws.jwks_url,
                "SES_SENDER": self.aws.ses_sender,
                "SNS_TOPIC_ARN": self.aws.sns_topic_arn,
                "STRIPE_API_KEY": STRIPE_TEST_KEY,
                "STRIPE_API_BASE": self.localstripe_url,
                "STRIPE_WEBHOOK_SECRET": self.webhook_secret,
                **self.paypal_env(),
                "ADMIN_DATABASE_URL": self.postgres.url_for(self.config.database_name),
                "LOG_LEVEL": self.config.log_level,
            }
        )
        for service in SERVICES:
            prefix = service.upper()
            account = self.aws.service_accounts[service]
            env[f"{prefix}_DATABASE_URL"] = self.database_urls[service]
            env[f"{prefix}_SERVICE_ACCOUNT_USERNAME"] = account["username"]
            env[f"{prefix}_SERVICE_ACCOUNT_PASSWORD"] = account["password"]
        return env

    def _write_env_files(self) -> None:
        _write_env_file(
            self.env_file,
            self.shared_env(),
            "# MicroPay local stack, rewritten on every start. Load it with: . .data/local.env\n"
            "# Each service's complete environment is in .data/env/<service>.env.\n",
        )
        for service in SERVICES:
            _write_env_file(
                self.config.data_dir / "env" / f"{service}.env",
                self.service_env(service),
                f"# Environment of the {service} service in the local stack.\n",
            )

    # --- life cycle --------------------------------------------------------------------------
    def start(self, abort: threading.Event | None = None) -> Stack:
        """Start everything and wait until it answers; on failure stop it all and raise."""
        if self.processes or self.postgres is not None:
            raise StackError("this Stack was already started; make a new one")
        self._abort = abort
        started = time.monotonic()
        try:
            check_ports(self.config)
            self.config.data_dir.mkdir(parents=True, exist_ok=True)
            # moto and localstripe import for a few seconds: let them while PostgreSQL starts.
            self._start_stand_ins()
            self._start_postgres()
            self._wait_stand_ins()
            self._bootstrap()
            self._write_env_files()
            self._start_services()
            self._start_gateway()
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self.ready_seconds = time.monotonic() - started
        return self

    def _spawn(self, name: str, argv: list[str], env: Mapping[str, str]) -> ManagedProcess:
        self._check_abort()
        process = ManagedProcess(name, argv, env=env, cwd=ROOT, output=self.output)
        self.processes[name] = process
        process.start()
        return process

    def _check_abort(self) -> None:
        if self._abort is not None and self._abort.is_set():
            raise StackInterrupted("start-up interrupted")
        for process in self.processes.values():
            if not process.alive():
                raise ChildExitedError(process, "during start-up")

    def _start_stand_ins(self) -> None:
        base = self._base_env()
        self._spawn(
            "moto",
            [self.config.python, "-m", "moto.server", "-H", HOST, "-p", str(self.config.moto_port)],
            base,
        )
        self._spawn(
            "localstripe",
            [
                self.config.python,
                "-m",
                "stack.localstripe_server",
                "--host",
                HOST,
                "--port",
                str(self.config.localstripe_port),
            ],
            base,
        )
        self._spawn(
            "paypal",
            [
                self.config.python,
                "-m",
                "stack.paypal_server",
                "--host",
                HOST,
                "--port",
                str(self.config.paypal_port),
            ],
            base,
        )

    def _start_postgres(self) -> None:
        self._check_abort()
        if self.config.database_url:
            server = start_postgres(self.postgres_dir, self.config.database_url)
        else:
            pgdata = self.postgres_dir
            pgdata.parent.mkdir(parents=True, exist_ok=True)
            with warnings.catch_warnings():
                # platformdirs warns at import when XDG_RUNTIME_DIR is unset; the fallback is fine.
                warnings.simplefilter("ignore")
                import pgserver  # noqa: F401
            _forget_dead_postgres_users(pgdata)
            # Only the handle opened here is closed by stop(): a test process may already use
            # the same embedded server for other things.
            self._owns_postgres = not _embedded_open_in_this_process(pgdata)
            server = start_postgres(pgdata, None)
        self.postgres = server
        passwords_file = self.config.role_passwords_file or (
            self.config.data_dir / "role-passwords.json"
        )
        self.database_urls = _run_coroutine(
            lambda: prepare_database(
                server,
                self.config.database_name,
                passwords_file,
                recreate=self.config.recreate_database,
            )
        )

    def _wait_stand_ins(self) -> None:
        self._wait_http("moto", f"{self.moto_url}/moto-api/", accept=lambda status: status < 500)
        # localstripe answers 401 without an API key, which is enough to know it is up.
        self._wait_http(
            "localstripe", f"{self.localstripe_url}/v1/customers", accept=lambda s: s < 500
        )
        self._wait_http("paypal", f"{self.paypal_url}/checkoutnow", accept=lambda s: s < 500)

    def _bootstrap(self) -> None:
        self._check_abort()
        with _local_aws_env():
            self.aws = bootstrap_aws(endpoint_url=self.moto_url)
        self.webhook_secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        register_stripe_webhook(
            self.localstripe_url,
            f"{self.service_urls['payment']}/payments/webhooks/stripe",
            self.webhook_secret,
        )
        self.paypal_webhook_id = register_paypal_webhook(
            self.paypal_url,
            PAYPAL_CLIENT_ID,
            PAYPAL_CLIENT_SECRET,
            f"{self.service_urls['payment']}/payments/webhooks/paypal",
        )

    def _service_argv(self, service: str) -> list[str]:
        return [
            self.config.python,
            "-m",
            "uvicorn",
            SERVICES[service].app,
            "--host",
            HOST,
            "--port",
            str(self.config.service_ports[service]),
            # What measured fastest (docs/benchmarks.md); named so a missing one fails loudly.
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--workers",
            str(self.config.workers),
            # A failing start-up (bad settings, no database) must end the process.
            "--lifespan",
            "on",
            "--no-access-log",
            "--timeout-graceful-shutdown",
            "5",
        ]

    def _start_services(self) -> None:
        base = self._base_env()
        for service in SERVICES:
            self._spawn(service, self._service_argv(service), {**base, **self.service_env(service)})

    def _start_gateway(self) -> None:
        if not self.config.gateway:
            self.gateway_skipped_reason = "the gateway is disabled"
            return
        nginx = self.config.nginx_binary or find_nginx()
        if nginx is None:
            self.gateway_skipped_reason = (
                "nginx is not installed, so the gateway is not running; the services answer on "
                "their own ports (install nginx, e.g. `apt-get install nginx` or "
                "`brew install nginx`, for the gateway)"
            )
            self.output("launcher", self.gateway_skipped_reason)
            return
        if not os.access(nginx, os.X_OK):
            raise StackError(f"nginx binary {nginx!r} (MICROPAY_NGINX) is not executable")
        try:
            self.web_skipped_reason = build_web_app(self.output)
        except WebBuildError as exc:
            raise StackError(str(exc)) from exc
        if self.web_skipped_reason:
            self.output("launcher", self.web_skipped_reason)
        ports = self.config.service_ports
        files = write_nginx_config(
            self.config.data_dir / "nginx",
            {
                "GATEWAY_PORT": f"{HOST}:{self.config.gateway_port}",
                **{f"{name.upper()}_UPSTREAM": f"{HOST}:{port}" for name, port in ports.items()},
                # The app loads localstripe's Stripe.js, which calls localstripe itself.
                "WEB_ROOT": str(WEB_DIST),
                "STRIPE_JS_URL": f"{self.localstripe_url}/js.stripe.com/v3/",
                "STRIPE_PUBLISHABLE_KEY": STRIPE_PUBLISHABLE_TEST_KEY,
                "STRIPE_JS_ORIGINS": self.localstripe_url,
            },
        )
        try:
            check_nginx_config(nginx, files)
        except Exception as exc:
            raise StackError(str(exc)) from exc
        self._spawn("gateway", nginx_command(nginx, files), self._base_env())
        self.gateway_url = f"http://{HOST}:{self.config.gateway_port}"

    def _wait_ready(self) -> None:
        for service, url in self.service_urls.items():
            self._wait_http(service, f"{url}/health/ready", accept=lambda status: status == 200)
        if self.gateway_url:
            self._wait_http(
                "gateway", f"{self.gateway_url}/healthz", accept=lambda status: status == 200
            )

    def _wait_http(self, name: str, url: str, *, accept: Callable[[int], bool]) -> None:
        """Poll `url` until `accept(status)`; fail early when a child dies or on timeout."""
        deadline = time.monotonic() + self.config.startup_timeout
        last = "no answer yet"
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while True:
                self._check_abort()
                try:
                    status = client.get(url).status_code
                except httpx.HTTPError as exc:
                    last = f"{type(exc).__name__}"
                else:
                    if accept(status):
                        return
                    last = f"HTTP {status}"
                if time.monotonic() > deadline:
                    tail = ""
                    process = self.processes.get(name)
                    if process is not None:
                        tail = "\nits last output:\n" + "\n".join(
                            f"    {line}" for line in process.tail()[-30:]
                        )
                    raise StackError(
                        f"{name} did not become ready at {url} within "
                        f"{self.config.startup_timeout:.0f}s (last: {last}){tail}"
                    )
                time.sleep(0.1)

    def exited_process(self) -> ManagedProcess | None:
        """A child that has exited, if any."""
        for process in self.processes.values():
            if process.started and not process.alive():
                return process
        return None

    def wait(self, stop: threading.Event, poll_interval: float = 0.2) -> ManagedProcess | None:
        """Block until `stop` is set (returns None) or a child exits (returns that child)."""
        while not stop.wait(poll_interval):
            exited = self.exited_process()
            if exited is not None:
                return exited
        return None

    # --- faults: one part stopped while the rest runs ------------------------------------------
    def stop_service(self, service: str) -> None:
        """Stop one service (SIGTERM, then SIGKILL) and leave every other part running."""
        if service not in SERVICES:
            raise StackError(f"unknown service {service!r}; one of {', '.join(SERVICES)}")
        process = self.processes.pop(service, None)
        if process is None or not process.alive():
            raise StackError(f"{service} is not running")
        stop_processes([process], timeout=self.config.stop_timeout)

    def start_service(self, service: str) -> None:
        """Start a service stopped by stop_service() again and wait until it is ready."""
        if service not in SERVICES:
            raise StackError(f"unknown service {service!r}; one of {', '.join(SERVICES)}")
        if service in self.processes:
            raise StackError(f"{service} is already running")
        self._spawn(
            service, self._service_argv(service), {**self._base_env(), **self.service_env(service)}
        )
        url = self.service_urls[service]
        self._wait_http(service, f"{url}/health/ready", accept=lambda status: status == 200)

    def stop_postgres(self) -> None:
        """Stop the embedded PostgreSQL (fast shutdown: sessions are cut, nothing is lost)."""
        from pgserver._commands import pg_ctl  # type: ignore[attr-defined]

        embedded = self._embedded_postgres()
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=embedded.pgdata, user=embedded.system_user)

    def start_postgres(self) -> None:
        """Start the embedded PostgreSQL stopped by stop_postgres() again, on the same socket."""
        from pgserver.postgres_server import PostgresServer as EmbeddedServer

        embedded = self._embedded_postgres()
        with EmbeddedServer._lock:
            # Records the new postmaster too, so that stop() still shuts the server down.
            embedded.ensure_postgres_running()

    def _embedded_postgres(self) -> Any:
        embedded = self.postgres.embedded if self.postgres is not None else None
        if embedded is None or not self._owns_postgres:
            raise StackError(
                "only an embedded PostgreSQL that this stack started can be stopped and started"
            )
        return embedded

    def pids(self) -> dict[str, int]:
        """Process (group) id of every child started."""
        return {name: p.pid for name, p in self.processes.items() if p.started}

    def stop(self) -> None:
        """Stop every child (SIGTERM, then SIGKILL after a timeout) and the embedded PostgreSQL."""
        if self._stopped:
            return
        self._stopped = True
        stop_processes(self.processes.values(), timeout=self.config.stop_timeout)
        embedded = self.postgres.embedded if self.postgres is not None else None
        if embedded is not None and self._owns_postgres:
            # pgserver stops the server once no process that opened it is left; this closes
            # this process's handle now rather than at interpreter exit.
            with contextlib.suppress(Exception):
                embedded.cleanup()

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
