"""Async database engine and the request-scoped session (commit on success, else rollback)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, Request
from sqlalchemy import event, exc, text
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from micropay_common.errors import UNAVAILABLE_SQLSTATES
from micropay_common.settings import ServiceSettings
from micropay_common.state import AppState


def async_database_url(url: str) -> URL:
    """Turn a `postgresql://` URL (as libpq and the README spell it) into an asyncpg one."""
    parsed = make_url(url)
    if parsed.drivername in ("postgres", "postgresql", "postgresql+psycopg", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    if parsed.drivername != "postgresql+asyncpg":
        raise ValueError(f"DATABASE_URL must be a PostgreSQL URL, got {parsed.drivername!r}")
    return parsed


def asyncpg_connect_kwargs(url: str) -> dict[str, Any]:
    """user, password, database, host and port of a database URL, as `asyncpg.connect` takes them.

    For connections of our own beside the session pool (a LISTEN, a probe pool); a Unix socket
    directory given as `?host=` counts as the host.
    """
    parsed = async_database_url(url)
    host = parsed.query.get("host") or parsed.host
    return {
        "user": parsed.username,
        "password": parsed.password,
        "database": parsed.database,
        "host": host[0] if isinstance(host, tuple) else host,
        "port": parsed.port,
    }


def create_engine(settings: ServiceSettings, schema: str) -> AsyncEngine:
    """Engine for one service; unqualified shared tables (outbox, inbox, …) land in `schema`."""
    engine = create_async_engine(
        async_database_url(settings.database_url),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_recycle=1800,
        connect_args={
            "server_settings": {
                "application_name": settings.service_name,
                "search_path": schema,
            },
            "command_timeout": 30,
        },
    )
    # A ping on every checkout costs three round trips per request. A connection in steady
    # use is known to be alive; one that broke anyway (a restart, a failover) fails its
    # request with a 503 and makes the pool replace every connection opened before it.
    ping_when_idle(engine, settings.db_ping_after_idle_seconds)
    return engine.execution_options(schema_translate_map={None: schema})


def ping_when_idle(engine: AsyncEngine, idle_seconds: float) -> None:
    """Ping a pooled connection at checkout when it has been idle for over `idle_seconds`."""

    @event.listens_for(engine.sync_engine, "checkin")
    def _checked_in(dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since <= idle_seconds:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:
            # The pool discards this connection and checks out (or opens) another.
            raise exc.DisconnectionError("pooled connection failed its ping") from error


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


_AFTER_COMMIT = "micropay_after_commit"


def after_commit(session: AsyncSession, action: Callable[[], None]) -> None:
    """Run `action` when the session's transaction commits; forget it if it rolls back.

    For effects outside the database that must follow only what was committed (a replica's
    in-memory state), without the service committing itself.
    """
    pending: list[Callable[[], None]] | None = session.info.get(_AFTER_COMMIT)
    if pending is None:
        pending = session.info[_AFTER_COMMIT] = []
        actions = pending

        @event.listens_for(session.sync_session, "after_commit")
        def _committed(_session: Any) -> None:
            due = list(actions)
            actions.clear()
            for run in due:
                run()

        @event.listens_for(session.sync_session, "after_rollback")
        def _rolled_back(_session: Any) -> None:
            actions.clear()

    pending.append(action)


async def ping(engine: AsyncEngine) -> None:
    """Raise unless the database answers a trivial query."""
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request: commit when the endpoint returns, roll back when it raises."""
    async with AppState.of(request.app).sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


# scope="function" closes the session (and commits) before the response is sent, so a failed
# commit becomes an error response instead of a 2xx for a change that did not happen.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


async def get_connection(request: Request) -> AsyncIterator[AsyncConnection]:
    """A connection in autocommit: each statement is its own transaction, with no BEGIN or
    COMMIT round trip around it. For hot paths whose whole work is one statement."""
    async with AppState.of(request.app).engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        yield connection


ConnectionDep = Annotated[AsyncConnection, Depends(get_connection, scope="function")]


async def create_pool(settings: ServiceSettings, schema: str) -> asyncpg.Pool:
    """The app's asyncpg pool for its hot paths' single statements, sized like the engine's.

    Connections open on demand (a database down at start-up fails requests, not the start),
    with the service's search_path and application_name, and asyncpg's statement cache.
    """
    return await asyncpg.create_pool(
        **asyncpg_connect_kwargs(settings.database_url),
        min_size=0,
        max_size=settings.db_pool_size + settings.db_max_overflow,
        command_timeout=30,
        server_settings={"application_name": settings.service_name, "search_path": schema},
        # The default reset is one more round trip per release (UNLISTEN, RESET ALL, …); a
        # single statement in autocommit leaves no session state behind to undo.
        reset=_keep_session,
    )


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Release a pooled connection as it is: no reset query."""


_ASYNCPG = PGDialect_asyncpg()  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class Statement:
    """A SQLAlchemy statement compiled once to asyncpg's SQL (`$1`, `$2`, …): its parameters'
    names in order and the values its literals bound."""

    sql: str
    names: tuple[str, ...]
    bound: dict[str, Any]

    @classmethod
    def of(cls, statement: ClauseElement) -> Statement:
        """Compile `statement` for asyncpg (tables named with their schema, as the metadata has
        them)."""
        compiled = statement.compile(dialect=_ASYNCPG)
        assert isinstance(compiled, SQLCompiler)
        return cls(compiled.string, tuple(compiled.positiontup or ()), dict(compiled.params))

    def arguments(self, values: dict[str, Any]) -> list[Any]:
        """The positional arguments for `values` (by name; a literal's own value otherwise)."""
        return [values[name] if name in values else self.bound[name] for name in self.names]


class Direct:
    """One statement at a time on the app's asyncpg pool, each its own transaction: one round
    trip, no BEGIN or COMMIT, no SQLAlchemy on the way. For hot paths whose whole work is one
    statement."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def fetch(self, statement: Statement, **values: Any) -> list[asyncpg.Record]:
        """Every row `statement` returns."""
        rows: list[asyncpg.Record] = await self._run("fetch", statement, values)
        return rows

    async def fetchrow(self, statement: Statement, **values: Any) -> asyncpg.Record | None:
        """The first row `statement` returns, or None."""
        row: asyncpg.Record | None = await self._run("fetchrow", statement, values)
        return row

    async def fetchval(self, statement: Statement, **values: Any) -> Any:
        """The first column of the first row `statement` returns."""
        return await self._run("fetchval", statement, values)

    async def _run(self, method: str, statement: Statement, values: dict[str, Any]) -> Any:
        arguments = statement.arguments(values)
        try:
            return await self._once(method, statement.sql, arguments)
        except asyncpg.InternalClientError:
            # The pool handed out a connection the server had already ended (its farewell was
            # read, the socket not yet closed): asyncpg refused before sending anything, so
            # the statement did not run. Once more, on a connection opened now.
            try:
                return await self._once(method, statement.sql, arguments)
            except asyncpg.InternalClientError as error:
                raise ConnectionError(
                    f"the database keeps ending connections: {error!r}"
                ) from error

    async def _once(self, method: str, sql: str, arguments: list[Any]) -> Any:
        acquired = self.pool.acquire()
        connection = await acquired.__aenter__()
        try:
            return await getattr(connection, method)(sql, *arguments)
        except asyncpg.PostgresError as error:
            if (error.sqlstate or "").startswith(UNAVAILABLE_SQLSTATES):
                _close(connection)
            raise
        except BaseException:
            # Released without a reset query, a connection whose statement was cut short
            # (the server gone, a timeout, a cancel) could still be mid-protocol: it is
            # closed, and the pool opens a new one. A statement's own error (a refusal,
            # a lock timeout) leaves it ready and it stays.
            _close(connection)
            raise
        finally:
            await acquired.__aexit__(None, None, None)


def _close(connection: Any) -> None:
    """Close a pooled connection now (already gone, and so released, if the server ended it)."""
    with suppress(asyncpg.InterfaceError):
        connection.terminate()


async def get_direct(request: Request) -> Direct:
    """Dependency: the app's `Direct` (one object per app: nothing to open per request)."""
    return AppState.of(request.app).direct


DirectDep = Annotated[Direct, Depends(get_direct)]


Database = AsyncConnection | AsyncSession
"""Where a read (or a one-statement write) runs: an autocommit connection or a session."""

REFUSAL_SQLSTATE = "MP001"
"""What a SQL function raises to refuse a request: its statement, and all it wrote, roll back.

The message is the refusal's kind, the detail a JSON object of its fields; the service turns
them into its ProblemError (docs/conventions.md, "Hot paths in SQL")."""


@dataclass
class Refused(Exception):
    """A SQL function refused the request (SQLSTATE MP001): a kind and its fields."""

    kind: str
    fields: dict[str, Any] = field(default_factory=dict)


@contextmanager
def refusals() -> Iterator[None]:
    """Turn a SQL function's refusal, raised by a statement in this block, into Refused."""
    try:
        yield
    except asyncpg.PostgresError as error:
        # Straight from asyncpg (on `Direct`).
        if error.sqlstate != REFUSAL_SQLSTATE:
            raise
        raise Refused(error.message, json.loads(error.detail or "{}")) from error
    except exc.DBAPIError as error:
        if getattr(error.orig, "sqlstate", None) != REFUSAL_SQLSTATE:
            raise
        cause = error.orig.__cause__ if error.orig is not None else None
        detail = getattr(cause, "detail", None)
        raise Refused(getattr(cause, "message", ""), json.loads(detail or "{}")) from error
