"""Work wakes its worker at commit: `announce` in the writer's transaction, one `Listener` each.

A writer that leaves work for a background job (an outbox row, a notification to send) calls
`announce(session, channel)` in the same transaction. That is `pg_notify(channel, '')`:
PostgreSQL delivers it when the transaction commits, never when it rolls back, and folds the
repeats of one transaction into one.

Each process holds one `Listener`: a dedicated asyncpg connection (not one of the session
pool's) that LISTENs on every channel a part of the process subscribed to. `subscribe` gives an
`asyncio.Event` that each notification on the channel sets; a job waits on it between passes
(`run_periodically(..., wake=event)`), so it runs within moments of the commit instead of at its
next poll. The payload is never read: any database role may NOTIFY on any channel, so a
notification only says "look now", and the table stays the only source of truth.

Notifications sent while the connection is down are lost. The listener notices a lost connection
(asyncpg's termination callback), reconnects with a growing, jittered delay, and on every
(re)connection sets every subscriber's event, so each job looks once for what it may have missed.
The jobs keep a poll interval as the safety net for whatever falls between.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
from sqlalchemy import bindparam, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from micropay_common.db import asyncpg_connect_kwargs
from micropay_common.jobs import backoff_delay

logger = logging.getLogger("micropay.wakeup")

CONNECT_TIMEOUT_SECONDS = 5.0
RECONNECT_BASE_SECONDS = 0.25
RECONNECT_MAX_SECONDS = 2.0
"""The longest wait between two attempts to connect again while the database cannot be reached."""

# Built once: a statement built per call costs a compilation every time.
_NOTIFY = select(func.pg_notify(bindparam("channel"), literal("")))


async def announce(session: AsyncSession, channel: str) -> None:
    """Wake the listeners of `channel` when the caller's transaction commits (never commits)."""
    await session.execute(_NOTIFY, {"channel": channel})


class Listener:
    """One LISTEN connection per process, waking the subscribers of each channel it hears."""

    def __init__(
        self,
        database_url: str,
        *,
        application_name: str,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.database_url = database_url
        self.application_name = application_name
        self.connects = 0
        """Successful connections so far (for tests and debugging)."""
        self._rng = rng
        self._subscribers: dict[str, list[asyncio.Event]] = {}
        self._connection: asyncpg.Connection | None = None
        self._listening: set[str] = set()
        """The channels the current connection LISTENs on."""
        # One command at a time on the connection: asyncpg refuses concurrent ones.
        self._lock = asyncio.Lock()
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect (a failure is logged and retried in the background) and stay connected."""
        try:
            await self.connection_now()
        except Exception as exc:
            logger.warning("listener: cannot connect yet; retrying: %r", exc)
        self._task = asyncio.create_task(self._stay_connected(), name="listener")

    async def stop(self) -> None:
        """Stop reconnecting and close the connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.disconnect()

    async def subscribe(self, channel: str) -> asyncio.Event:
        """An event set by every notification on `channel` (and by every reconnection)."""
        event = asyncio.Event()
        self._subscribers.setdefault(channel, []).append(event)
        if channel in self._listening:
            return event
        async with self._lock:
            # A channel is listened to once, from its first subscriber on, for good; without a
            # connection, the next one listens to it.
            connection = self._connection
            if (
                connection is not None
                and not connection.is_closed()
                and channel not in self._listening
            ):
                await connection.add_listener(channel, self._notified)
                self._listening.add(channel)
        return event

    def unsubscribe(self, channel: str, event: asyncio.Event) -> None:
        """Stop setting `event` (the channel stays listened to: the next subscriber is cheap)."""
        events = self._subscribers.get(channel, [])
        if event in events:
            events.remove(event)

    @property
    def connected(self) -> bool:
        """Whether the connection is open (notifications are heard)."""
        return self._connection is not None and not self._connection.is_closed()

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """The connection, connecting first if needed, for one caller's commands at a time."""
        async with self._lock:
            yield await self._connect_locked()

    async def connection_now(self) -> asyncpg.Connection:
        """Connect if not connected; the connection (not to be used for commands)."""
        async with self._lock:
            return await self._connect_locked()

    async def disconnect(self) -> None:
        """Drop the connection (a failed read on it, say); it is opened again shortly."""
        connection, self._connection = self._connection, None
        self._lost.set()
        if connection is not None and not connection.is_closed():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 2.0)

    async def _connect_locked(self) -> asyncpg.Connection:
        if self._connection is not None and not self._connection.is_closed():
            return self._connection
        connection = await asyncpg.connect(
            **asyncpg_connect_kwargs(self.database_url),
            timeout=CONNECT_TIMEOUT_SECONDS,
            server_settings={"application_name": self.application_name},
        )
        channels = set(self._subscribers)
        try:
            for channel in channels:
                await connection.add_listener(channel, self._notified)
        except BaseException:
            await connection.close()
            raise
        connection.add_termination_listener(self._terminated)
        self._connection = connection
        self._listening = channels
        self.connects += 1
        # Whatever was announced while no connection listened went unheard: look now.
        self._wake_all()
        return connection

    def _notified(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        for event in self._subscribers.get(channel, ()):
            event.set()

    def _terminated(self, connection: Any) -> None:
        if connection is self._connection:
            self._connection = None
        self._lost.set()
        self._wake_all()

    def _wake_all(self) -> None:
        for events in self._subscribers.values():
            for event in events:
                event.set()

    async def _stay_connected(self) -> None:
        failures = 0
        while True:
            if self.connected:
                self._lost.clear()
                # Checked again after clearing: a loss in between has set it anew.
                if self.connected:
                    await self._lost.wait()
                continue
            try:
                await self.connection_now()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                delay = backoff_delay(
                    failures, base=RECONNECT_BASE_SECONDS, cap=RECONNECT_MAX_SECONDS, rng=self._rng
                )
                logger.warning(
                    "listener: connection lost (%d failed attempts); retrying in %.2fs: %r",
                    failures,
                    delay,
                    exc,
                    extra={"failures": failures},
                )
                await asyncio.sleep(delay)
            else:
                if failures:
                    logger.info("listener: connected again after %d failed attempts", failures)
                failures = 0
