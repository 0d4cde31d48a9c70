"""The docker compose stack of docker-compose.yml, as the e2e tests see a stack.

`make test-containers` loads this module as a pytest plugin (`-p tests.containers.compose`):
its session fixture `compose_stack` starts the stack from the images already built
(deploy/build-images.sh), with tests/containers/compose.test.yml on top, waits for every
healthcheck, and tears it down with its volumes. With MICROPAY_E2E_TARGET=compose the e2e
suite's `stack` fixture is this stack, so the same journey tests run through the
containerised gateway on its published 127.0.0.1 port.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from micropay_common.services import SERVICES
from stack.bootstrap import DEFAULT_SENDER, WEBHOOK_SECRETS_KEY_ALIAS, AwsResources

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILES = (ROOT / "docker-compose.yml", ROOT / "tests" / "containers" / "compose.test.yml")
BASE_IMAGE_VARIABLES = ("PYTHON_IMAGE", "POSTGRES_IMAGE", "NGINX_IMAGE", "MOTO_IMAGE")
SERVICE_NAMES = tuple(str(name) for name in SERVICES)
# The parts of the stack that run until stopped (the bootstrap job runs once and exits).
LONG_RUNNING = ("postgres", "moto", "localstripe", *SERVICE_NAMES, "gateway")
UP_TIMEOUT_SECONDS = 300


class EngineMissingError(RuntimeError):
    """No Docker engine (or no compose v2) answers here."""


def docker(
    *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the docker client; its output as text."""
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise RuntimeError(
            f"docker {shlex.join(args)} exited {result.returncode}: {result.stderr.strip()}"
        )
    return result


def require_engine() -> None:
    """Fail clearly when there is no engine or no `docker compose`; `make test-containers`
    starts one (deploy/docker-engine.sh)."""
    if shutil.which("docker") is None:
        raise EngineMissingError("no docker client on PATH: run `make test-containers`")
    if docker("info", check=False, timeout=30).returncode != 0:
        raise EngineMissingError(
            "no Docker engine answers: run `make test-containers`, which starts one "
            "(on Debian, as root, it installs docker.io)"
        )
    if docker("compose", "version", check=False, timeout=30).returncode != 0:
        raise EngineMissingError("`docker compose` (v2) is missing: run `make test-containers`")


def random_password() -> str:
    """Letters and digits only: the passwords go into postgresql:// URLs."""
    return secrets.token_hex(16)


def parse_env_file(text: str) -> dict[str, str]:
    """The values of the bootstrap job's `export NAME='value'` file."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("export "):
            name, _, quoted = line.removeprefix("export ").partition("=")
            values[name] = shlex.split(quoted)[0] if quoted else ""
    return values


@dataclass
class ComposeStack:
    """One compose project of docker-compose.yml (+ the test overlay)."""

    project: str
    env_file: Path
    environment: dict[str, str]
    passwords: dict[str, str] = field(default_factory=dict)
    aws: AwsResources | None = None
    webhook_secret: str = ""
    gateway_url: str | None = None
    receiver_listen_host: str = "127.0.0.1"
    receiver_url_host: str = "host.docker.internal"
    _published: dict[str, str] = field(default_factory=dict)

    # --- the compose command -----------------------------------------------------------------
    def compose_args(self, *args: str) -> list[str]:
        """`docker compose` of this project with its env file and compose files."""
        files = [arg for path in COMPOSE_FILES for arg in ("--file", str(path))]
        return [
            "docker",
            "compose",
            "--project-name",
            self.project,
            "--env-file",
            str(self.env_file),
            *files,
            *args,
        ]

    def compose(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run `docker compose ...` for this project."""
        env = {**os.environ, **self.environment}
        result = subprocess.run(
            self.compose_args(*args),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=ROOT,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"docker compose {shlex.join(args)} exited {result.returncode}:\n"
                f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
            )
        return result

    def container(self, service: str) -> str:
        """The id of the service's container."""
        ids = self.compose("ps", "--all", "--quiet", service).stdout.split()
        assert len(ids) == 1, f"{service}: containers {ids}"
        return ids[0]

    def inspect(self, service: str) -> dict[str, object]:
        """`docker inspect` of the service's container."""
        data: list[dict[str, object]] = json.loads(
            docker("inspect", self.container(service)).stdout
        )
        return data[0]

    def published(self, service: str, port: int) -> str:
        """host:port where the service's container port is published on 127.0.0.1."""
        key = f"{service}:{port}"
        if key not in self._published:
            address = self.compose("port", service, str(port)).stdout.strip()
            assert address.startswith("127.0.0.1:"), f"{service} is published on {address}"
            self._published[key] = address
        return self._published[key]

    def read_env_file(self, service: str) -> dict[str, str]:
        """The env file the bootstrap job wrote for the service (read inside its container)."""
        text = self.compose(
            "exec", "-T", service, "cat", f"/var/lib/micropay/env/{service}.env"
        ).stdout
        return parse_env_file(text)

    # --- what the e2e tests read -------------------------------------------------------------
    @property
    def service_urls(self) -> dict[str, str]:
        """Base URL of each service on its published port."""
        return {
            str(name): f"http://{self.published(str(name), spec.port)}"
            for name, spec in SERVICES.items()
        }

    @property
    def moto_url(self) -> str:
        """moto's published URL."""
        return f"http://{self.published('moto', 4566)}"

    @property
    def localstripe_url(self) -> str:
        """localstripe's published URL."""
        return f"http://{self.published('localstripe', 8420)}"

    # --- life cycle ----------------------------------------------------------------------------
    def up(self) -> None:
        """Start every part from the built images and wait until each is healthy."""
        self.compose(
            "up",
            "--no-build",
            "--detach",
            "--wait",
            "--wait-timeout",
            str(UP_TIMEOUT_SECONDS),
            timeout=UP_TIMEOUT_SECONDS + 60,
        )
        self.gateway_url = f"http://{self.published('gateway', 8080)}"
        self.load_generated()
        # The address host.docker.internal has for the services: the receiver listens there.
        resolved = self.compose(
            "exec",
            "-T",
            "notifications",
            "python",
            "-c",
            "import socket; print(socket.gethostbyname('host.docker.internal'))",
        )
        self.receiver_listen_host = resolved.stdout.strip()

    def load_generated(self) -> None:
        """What the bootstrap job generated: the pool, the service accounts, the webhook secret."""
        accounts: dict[str, dict[str, str]] = {}
        values: dict[str, str] = {}
        for service in SERVICE_NAMES:
            values = self.read_env_file(service)
            accounts[service] = {
                "username": values["SERVICE_ACCOUNT_USERNAME"],
                "password": values["SERVICE_ACCOUNT_PASSWORD"],
            }
            if service == "payment":
                self.webhook_secret = values["STRIPE_WEBHOOK_SECRET"]
        self.aws = AwsResources(
            region=self.environment.get("AWS_REGION", "us-east-1"),
            endpoint_url=self.moto_url,
            user_pool_id=values["COGNITO_USER_POOL_ID"],
            client_id=values["COGNITO_CLIENT_ID"],
            client_secret=values["COGNITO_CLIENT_SECRET"],
            issuer=values["COGNITO_ISSUER"],
            jwks_url=values["COGNITO_JWKS_URL"],
            ses_sender=DEFAULT_SENDER,
            sns_topic_arn="",
            webhook_secrets_kms_key_id=WEBHOOK_SECRETS_KEY_ALIAS,
            service_accounts=accounts,
        )

    def logs(self) -> str:
        """Every container's output."""
        return self.compose("logs", "--no-color", "--timestamps", check=False, timeout=60).stdout

    def down(self) -> None:
        """Stop and remove every container, network and volume of the project."""
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "20", timeout=180)


def start_compose_stack(project: str, workdir: Path) -> ComposeStack:
    """A new project with random passwords in its own env file (never the checkout's .env)."""
    passwords = {
        "POSTGRES_PASSWORD": random_password(),
        **{spec.password_variable: random_password() for spec in SERVICES.values()},
    }
    settings = {
        **passwords,
        "STRIPE_API_KEY": "sk_test_local",
        # Every client of the test is one address behind the gateway (as in `make run`).
        "SIGNUP_MAX_PER_IP": "100000",
        "CONFIRM_MAX_ATTEMPTS_PER_IP": "100000",
        "RESEND_MAX_PER_IP": "100000",
        # An ephemeral port on 127.0.0.1: `docker compose port gateway 8080` tells which.
        "MICROPAY_GATEWAY_PUBLISH": "127.0.0.1:",
    }
    env_file = workdir / "compose.env"
    env_file.write_text("".join(f"{name}={value}\n" for name, value in settings.items()))
    env_file.chmod(0o600)
    # The base images deploy/base-images/build.sh chose (stand-ins where nothing can be pulled).
    environment = {name: os.environ[name] for name in BASE_IMAGE_VARIABLES if os.environ.get(name)}
    stack = ComposeStack(project=project, env_file=env_file, environment=environment)
    stack.passwords = passwords
    try:
        stack.up()
    except BaseException:
        (workdir / "compose.log").write_text(stack.logs())
        stack.down()
        raise
    return stack


@pytest.fixture(scope="session")
def compose_stack() -> Iterator[ComposeStack]:
    """The whole compose stack, healthy; removed with its volumes at the end of the session."""
    try:
        require_engine()
    except EngineMissingError as exc:
        pytest.fail(str(exc))
    workdir = Path(tempfile.mkdtemp(prefix="micropay-compose-"))
    project = f"micropay-test-{secrets.token_hex(3)}"
    try:
        stack = start_compose_stack(project, workdir)
    except Exception as exc:
        pytest.fail(f"the compose stack did not start ({exc}); logs: {workdir / 'compose.log'}")
    try:
        yield stack
    finally:
        (workdir / "compose.log").write_text(stack.logs())
        stack.down()
        print(f"compose logs of {project}: {workdir / 'compose.log'}")
