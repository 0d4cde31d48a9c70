"""Fixtures shared by every test: a real PostgreSQL, moto server (Cognito/SES/SNS) and apps."""

from __future__ import annotations

import asyncio
import inspect
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import APIRouter, FastAPI

from micropay_common.app import BackgroundJob, create_service_app
from micropay_common.events import EventEnvelope
from micropay_common.settings import ServiceSettings
from stack.bootstrap import AwsResources, admin_log_in, bootstrap_aws, create_confirmed_user
from stack.postgres import PostgresServer, prepare_database, start_postgres

ROOT = Path(__file__).resolve().parent
DATA_DIR = ROOT / ".data"

# boto3 needs credentials even for moto; real ones are never used by the tests.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_http(
    url: str, timeout: float = 30.0, process: subprocess.Popen[Any] | None = None
) -> None:
    """Poll `url` until it answers, or fail naming what did not start."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            pytest.fail(f"the process serving {url} exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError as exc:
            last_error = exc
            time.sleep(0.1)
    pytest.fail(f"{url} did not answer within {timeout}s: {last_error!r}")


# --- PostgreSQL --------------------------------------------------------------------------------


@dataclass
class TestDatabase:
    """A freshly created database with PostgreSQL.sql applied."""

    __test__ = False  # a fixture value, not a test class

    server: PostgresServer
    name: str
    service_urls: dict[str, str]

    @property
    def admin_url(self) -> str:
        """Superuser URL of the test database."""
        return self.server.url_for(self.name)


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


# --- moto (Cognito, SES, SNS) ---------------------------------------------------------------------


@contextmanager
def background_process(name: str, args: list[str], ready_url: str) -> Iterator[str]:
    """Run a helper process (output to .data/test-logs/<name>.log) until the block ends."""
    log_dir = DATA_DIR / "test-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / f"{name}.log").open("w") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_http(ready_url, process=process)
            yield ready_url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


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
def aws(moto_endpoint: str) -> AwsResources:
    """The user pool, client, groups, service accounts, SES sender and SNS topic."""
    return bootstrap_aws(endpoint_url=moto_endpoint)


@dataclass
class CognitoUser:
    """A confirmed pool user and a fresh set of tokens."""

    username: str
    password: str
    sub: str
    access_token: str
    id_token: str
    refresh_token: str


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


# --- settings and apps ---------------------------------------------------------------------------

SCHEMAS = {
    "auth": "auth",
    "payment": "payments",
    "transactions": "transactions",
    "notifications": "notifications",
}


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


def app_with(
    settings: ServiceSettings,
    schema: str,
    routers: Sequence[APIRouter] = (),
    background_jobs: Sequence[BackgroundJob] = (),
) -> FastAPI:
    """A service app built by the production factory around the routers a test needs."""
    return create_service_app(
        settings_cls=type(settings),
        settings=settings,
        schema=schema,
        title=f"test app on {schema}",
        description="Built by a test.",
        version="0",
        tags=[],
        routers=routers,
        background_jobs=background_jobs,
    )


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run an app's lifespan and give an HTTP client wired to it in-process."""
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30) as manager:
        # As in production, an unhandled error becomes a 500 response rather than a raise.
        transport = httpx.ASGITransport(app=manager.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


@asynccontextmanager
async def serve_http(app: Any, port: int | None = None) -> AsyncIterator[str]:
    """Run an ASGI app under uvicorn on 127.0.0.1 in this event loop; yields its base URL."""
    import asyncio

    import uvicorn

    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="auto")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 30
    while not server.started:
        if task.done():
            task.result()
            pytest.fail(f"uvicorn on port {port} stopped during start-up")
        if time.monotonic() > deadline:
            pytest.fail(f"uvicorn on port {port} did not start")
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def eventually(
    check: Callable[[], Any], *, within: float = 20.0, interval: float = 0.1
) -> Any:
    """Poll `check` (plain or async) until it gives something truthy; return it, or fail."""
    deadline = time.monotonic() + within
    value: Any = None
    while time.monotonic() < deadline:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(interval)
    pytest.fail(f"not reached within {within}s; last value: {value!r}")


async def every_item(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], **params: Any
) -> list[dict[str, Any]]:
    """Every item of a list endpoint, newest first, following `starting_after` page by page."""
    items: list[dict[str, Any]] = []
    query: dict[str, Any] = {"limit": 100, **params}
    while True:
        response = await client.get(path, params=query, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        items.extend(page["data"])
        if not page["has_more"]:
            return items
        query["starting_after"] = page["data"][-1]["id"]


def event_envelope(
    event_type: str, data: dict[str, Any], *, event_id: uuid.UUID | None = None
) -> dict[str, Any]:
    """An event as its producer's outbox relay posts it to `/internal/events`."""
    return EventEnvelope.new(event_type, data, event_id=event_id).model_dump(mode="json")


def bearer(token: str) -> dict[str, str]:
    """Authorization header for an access token."""
    return {"Authorization": f"Bearer {token}"}
