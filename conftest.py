"""Fixtures shared by every test: a real PostgreSQL, moto server (Cognito/SES/SNS) and apps."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

import asyncpg
import boto3
import pytest

from micropay_common import telemetry
from micropay_common.events import producer_of
from micropay_common.settings import ServiceSettings
from micropay_testing.cognito import CognitoUser
from micropay_testing.database import TestDatabase
from micropay_testing.gateway import NGINX, OutputLines, wait_until_answers
from micropay_testing.processes import DATA_DIR, background_process, free_port
from stack.bootstrap import AwsResources, admin_log_in, bootstrap_aws, create_confirmed_user
from stack.gateway import nginx_command, write_nginx_config
from stack.postgres import PostgresServer, connect, prepare_database, start_postgres
from stack.processes import ManagedProcess, stop_processes

# The suite runs with tracing off whatever the shell says: apps built in this process would
# otherwise set up the process's tracing (tests/e2e/test_tracing.py gives its stack its own).
for _variable in telemetry.ENVIRONMENT_VARIABLES:
    os.environ.pop(_variable, None)

# boto3 needs credentials even for moto; real ones are never used by the tests.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


# --- PostgreSQL --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_server() -> PostgresServer:
    """DATABASE_URL's server when set, else the embedded one (started on demand)."""
    try:
        server = start_postgres(DATA_DIR / "postgres", os.environ.get("DATABASE_URL"))
    except Exception as exc:
        pytest.fail(f"no PostgreSQL: set DATABASE_URL or let pgserver start one ({exc!r})")
    return server


@pytest.fixture(scope="session")
async def database(pg_server: PostgresServer) -> AsyncIterator[TestDatabase]:
    """A database of our own for this test session, dropped at the end."""
    name = f"micropay_test_{os.getpid()}"
    urls = await prepare_database(pg_server, name, DATA_DIR / "role-passwords.json", recreate=True)
    yield TestDatabase(server=pg_server, name=name, service_urls=urls)
    from stack.postgres import drop_database

    await drop_database(pg_server, name)


@pytest.fixture(scope="session")
async def admin(database: TestDatabase) -> AsyncIterator[asyncpg.Connection]:
    """A superuser connection to the test database, for looking behind the services' APIs."""
    conn = await connect(database.admin_url)
    yield conn
    await conn.close()


# --- moto (Cognito, SES, SNS) ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto server process of our own on a free port (Cognito, SES, SNS)."""
    port = free_port()
    args = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with background_process("moto", args, f"http://127.0.0.1:{port}/moto-api/"):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def localstripe_url() -> Iterator[str]:
    """A localstripe process of our own on a free port, empty at start (Stripe API)."""
    port = free_port()
    args = [sys.executable, "-m", "stack.localstripe_server", "--port", str(port), "--quiet"]
    with background_process("localstripe", args, f"http://127.0.0.1:{port}/v1/customers"):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def paypal_url() -> Iterator[str]:
    """The PayPal stand-in as a process of our own on a free port, empty at start."""
    port = free_port()
    args = [sys.executable, "-m", "stack.paypal_server", "--port", str(port), "--quiet"]
    with background_process("paypal", args, f"http://127.0.0.1:{port}/checkoutnow"):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def aws(moto_endpoint: str) -> AwsResources:
    """The user pool, client, groups, service accounts, SES sender and SNS topic."""
    return bootstrap_aws(endpoint_url=moto_endpoint)


@pytest.fixture(scope="session")
def cognito(aws: AwsResources) -> Any:
    """A boto3 cognito-idp client on moto."""
    return boto3.client("cognito-idp", region_name=aws.region, endpoint_url=aws.endpoint_url)


@pytest.fixture(scope="session")
def make_user(aws: AwsResources, cognito: Any) -> Callable[..., CognitoUser]:
    """Create a confirmed user (optionally in groups) and log in as it."""

    def factory(groups: tuple[str, ...] = (), username: str | None = None) -> CognitoUser:
        name = username or f"user-{uuid.uuid4().hex[:12]}@example.com"
        password = f"Pw-{uuid.uuid4().hex}A1"
        sub = create_confirmed_user(cognito, aws.user_pool_id, name, password, groups=groups)
        result = admin_log_in(cognito, aws, name, password)
        return CognitoUser(
            username=name,
            password=password,
            sub=sub,
            access_token=result["AccessToken"],
            id_token=result["IdToken"],
            refresh_token=result["RefreshToken"],
        )

    return factory


@pytest.fixture(scope="session")
def service_account_headers(aws: AwsResources, cognito: Any) -> dict[str, dict[str, str]]:
    """The Authorization header of each service's own account (`svc-<service>`), by service."""
    headers = {}
    for service, account in aws.service_accounts.items():
        result = admin_log_in(cognito, aws, account["username"], account["password"])
        headers[service] = {"Authorization": f"Bearer {result['AccessToken']}"}
    return headers


@pytest.fixture(scope="session")
def producer_headers(
    service_account_headers: dict[str, dict[str, str]],
) -> Callable[[str], dict[str, str]]:
    """The Authorization header an event type's producer delivers it with."""

    def headers(event_type: str) -> dict[str, str]:
        return service_account_headers[producer_of(event_type)]

    return headers


# --- settings and apps ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def service_settings(database: TestDatabase, aws: AwsResources) -> Callable[..., ServiceSettings]:
    """Settings of a service (its own DB role, moto) with optional overrides."""

    def factory(
        service: str, settings_cls: type[ServiceSettings] = ServiceSettings, **overrides: Any
    ) -> ServiceSettings:
        values: dict[str, Any] = {
            "service_name": service,
            "database_url": database.service_urls[service],
            "aws_region": aws.region,
            "aws_endpoint_url": aws.endpoint_url,
            "cognito_user_pool_id": aws.user_pool_id,
            "cognito_client_id": aws.client_id,
            "cognito_client_secret": aws.client_secret,
            "cognito_issuer": aws.issuer,
            "cognito_jwks_url": aws.jwks_url,
            "service_account_username": aws.service_accounts[service]["username"],
            "service_account_password": aws.service_accounts[service]["password"],
            "log_level": "WARNING",
        }
        values.update(overrides)
        return settings_cls.model_validate(values)

    return factory


@pytest.fixture(scope="session")
def idle_transactions_settings(service_settings: Callable[..., ServiceSettings]) -> Any:
    """The transactions service's settings with its peers unreachable and its jobs parked."""
    from transactions_microservice.settings import TransactionsSettings

    nowhere = f"http://127.0.0.1:{free_port()}"
    return service_settings(
        "transactions",
        settings_cls=TransactionsSettings,
        auth_url=nowhere,
        payment_url=nowhere,
        notifications_url=nowhere,
        outbox_poll_interval_seconds=3600,
        hold_sweep_interval_seconds=3600,
        money_request_sweep_interval_seconds=3600,
        invitation_sweep_interval_seconds=3600,
    )


@pytest.fixture(scope="session")
def moto_notifications_settings(
    service_settings: Callable[..., ServiceSettings], aws: AwsResources
) -> Any:
    """The notifications service's settings on moto (SES, SNS and the webhook secrets key)."""
    from notifications_microservice.settings import NotificationsSettings

    return service_settings(
        "notifications",
        settings_cls=NotificationsSettings,
        ses_sender=aws.ses_sender,
        sns_topic_arn=aws.sns_topic_arn,
        webhook_secrets_kms_key_id=aws.webhook_secrets_kms_key_id,
    )


# --- the nginx gateway -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def start_gateway(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., int]]:
    """Start nginx from the rendered gateway/nginx.conf in front of the given upstream ports
    (`values`: more placeholders, such as the web app's)."""
    tmp_path = tmp_path_factory.mktemp("gateway")
    started: list[ManagedProcess] = []

    def start(upstream_ports: Mapping[str, int], values: Mapping[str, str] | None = None) -> int:
        assert NGINX is not None
        port = free_port()
        files = write_nginx_config(
            tmp_path / f"nginx-{port}",
            {
                "GATEWAY_PORT": f"127.0.0.1:{port}",
                **{
                    f"{name.upper()}_UPSTREAM": f"127.0.0.1:{port}"
                    for name, port in upstream_ports.items()
                },
                **(values or {}),
            },
        )
        process = ManagedProcess(
            "gateway",
            nginx_command(NGINX, files),
            env={},
            cwd=DATA_DIR.parent,
            output=OutputLines(),
        )
        started.append(process)
        process.start()
        wait_until_answers(port, "/healthz", process)
        return port

    yield start
    stop_processes(started, timeout=5)


# The container tests need a Docker engine: only `make test-containers` collects them.
collect_ignore = [] if os.environ.get("MICROPAY_CONTAINER_TESTS") else ["tests/containers"]
