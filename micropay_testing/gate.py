"""A TCP gate in front of PostgreSQL that a test closes and opens: a database outage on demand."""

from __future__ import annotations

import asyncio
import contextlib

from sqlalchemy.engine import make_url

from micropay_testing.processes import free_port
from stack.postgres import asyncpg_dsn


class DatabaseGate:
    """Forwards 127.0.0.1:`port` to the server of `url` while open.

    Closing it refuses new connections and cuts the open ones, as a stopped server would;
    opening it again on the same port is the server coming back.
    """

    def __init__(self, url: str) -> None:
        self._upstream = asyncpg_dsn(url)
        self.port = free_port()
        # The same role and database, reached through the gate over TCP.
        self.url = (
            make_url(url)
            .set(host="127.0.0.1", port=self.port, query={})
            .render_as_string(hide_password=False)
        )
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()

    async def open(self) -> None:
        """Accept connections again."""
        if self._server is None:
            self._server = await asyncio.start_server(self._forward, "127.0.0.1", self.port)

    async def close(self) -> None:
        """Refuse new connections and cut every open one."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._connections):
            writer.transport.abort()
        self._connections.clear()
        if server is not None:
            await server.wait_closed()

    async def _connect_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        host = str(self._upstream["host"])
        port = int(self._upstream.get("port", 5432))
        if host.startswith("/"):
            return await asyncio.open_unix_connection(f"{host}/.s.PGSQL.{port}")
        return await asyncio.open_connection(host, port)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await self._connect_upstream()
        except OSError:
            writer.transport.abort()
            return
        self._connections.update((writer, upstream_writer))
        try:
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        finally:
            for end in (writer, upstream_writer):
                self._connections.discard(end)
                end.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.transport.abort()
