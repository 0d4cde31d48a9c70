"""PostgreSQL for the local stack and the tests: the one in DATABASE_URL, or an embedded one."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import URL, make_url

from micropay_common.services import SERVICES
from migrations import upgrade_database

# Each service's database role, by service name (micropay_common.services).
SERVICE_ROLES = {str(spec.name): spec.role for spec in SERVICES.values()}


@dataclass
class PostgresServer:
    """A reachable PostgreSQL server and an admin URL for it."""

    admin_url: str
    embedded: Any = field(default=None, repr=False)

    def url_for(self, database: str, user: str | None = None, password: str | None = None) -> str:
        """The admin URL pointed at another database, optionally as another role."""
        url: URL = make_url(self.admin_url).set(database=database)
        if user is not None:
            url = url.set(username=user, password=password)
        return url.render_as_string(hide_password=False)


def start_postgres(data_dir: Path, database_url: str | None) -> PostgresServer:
    """Use `database_url` when given, else start (or join) the embedded server in `data_dir`."""
    if database_url:
        return PostgresServer(admin_url=database_url)
    import pgserver

    data_dir.mkdir(parents=True, exist_ok=True)
    # cleanup_mode="stop": the server stops when the last process using it exits.
    server = pgserver.get_server(str(data_dir), cleanup_mode="stop")  # type: ignore[attr-defined]
    return PostgresServer(admin_url=server.get_uri(), embedded=server)


def asyncpg_dsn(url: str) -> dict[str, Any]:
    """Connection keywords for asyncpg from a postgresql:// URL (socket URLs included)."""
    parsed = make_url(url)
    kwargs: dict[str, Any] = {
        "user": parsed.username or "postgres",
        "password": parsed.password or None,
        "database": parsed.database or "postgres",
    }
    host = parsed.query.get("host") or parsed.host
    if isinstance(host, tuple):
        host = host[0]
    kwargs["host"] = host or "127.0.0.1"
    if parsed.port:
        kwargs["port"] = parsed.port
    return kwargs


async def connect(url: str) -> asyncpg.Connection:
    """An asyncpg connection from a postgresql:// URL."""
    return await asyncpg.connect(**asyncpg_dsn(url))


async def ensure_database(server: PostgresServer, name: str, *, recreate: bool = False) -> None:
    """Create database `name` unless it exists (dropping it first when `recreate`)."""
    conn = await connect(server.url_for("postgres"))
    try:
        if recreate:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def drop_database(server: PostgresServer, name: str) -> None:
    """Drop database `name` if it exists, disconnecting its sessions."""
    conn = await connect(server.url_for("postgres"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def migrate_database(server: PostgresServer, database: str) -> str:
    """Upgrade `database` to the latest migration as the admin (`make migrate`); its revision."""
    return await upgrade_database(server.url_for(database))


async def set_role_passwords(server: PostgresServer, passwords: dict[str, str]) -> None:
    """Give each service role its password (for servers that do not trust local logins)."""
    conn = await connect(server.url_for("postgres"))
    try:
        for role, password in passwords.items():
            quoted = await conn.fetchval("SELECT quote_literal($1::text)", password)
            await conn.execute(f'ALTER ROLE "{role}" PASSWORD {quoted}')
    finally:
        await conn.close()


def role_passwords(secrets_file: Path) -> dict[str, str]:
    """Local passwords of the service roles, generated once and kept in `secrets_file`."""
    if secrets_file.exists():
        stored: dict[str, str] = json.loads(secrets_file.read_text())
        if set(stored) == set(SERVICE_ROLES.values()):
            return stored
    passwords = {role: secrets.token_urlsafe(24) for role in SERVICE_ROLES.values()}
    secrets_file.parent.mkdir(parents=True, exist_ok=True)
    secrets_file.write_text(json.dumps(passwords, indent=2))
    secrets_file.chmod(0o600)
    return passwords


async def prepare_database(
    server: PostgresServer, database: str, secrets_file: Path, *, recreate: bool = False
) -> dict[str, str]:
    """Create the database, migrate it, set role passwords; returns each service's URL."""
    await ensure_database(server, database, recreate=recreate)
    await migrate_database(server, database)
    passwords = role_passwords(secrets_file)
    await set_role_passwords(server, passwords)
    return {
        service: server.url_for(database, role, passwords[role])
        for service, role in SERVICE_ROLES.items()
    }
