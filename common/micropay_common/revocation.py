"""Logout reaches every replica: an in-memory deny-set of revoked sign-ins, fed from PostgreSQL.

The auth service records a logout in `auth.revoked_tokens` (one row per sign-in, its
`origin_jti`, until its last access token expires) and sends `NOTIFY micropay_revocations` in
the same transaction, so the notification is delivered when the row is committed. Every replica
of every service keeps the revoked keys in a dict that `TokenVerifier` consults on each request
(`DenySet.check`), and one task per replica (`RevocationFeed`) keeps that dict current:

- it reads on the process's dedicated asyncpg connection (`micropay_common.wakeup.Listener`,
  not one of the session pool's), which LISTENs on the channel; a notification only wakes the
  task, which then reads the table. The payload is never
  believed: any database role may NOTIFY on any channel, so the table is the only source of
  truth, and a forged notification costs one small read, nothing more;
- it reads the table every REVOCATION_POLL_INTERVAL_SECONDS anyway (notifications sent while
  the connection is down are lost): the rows revoked since its last read, less an overlap for
  transactions that commit out of order, and everything at start, after a reconnect and every
  minute;
- a read that succeeds confirms the set. A user token that meets a set no read has confirmed
  for REVOCATION_MAX_STALENESS_SECONDS asks for a read at once and waits for it (up to that
  bound again); when none succeeds (the connection is down, the database unreachable) the
  verifier answers 503 `revocation_state_unavailable` instead of trusting a set that may miss a
  logout. Service accounts are still admitted (they never log out; their calls carry events
  and holds).

So a logout is refused everywhere once the first read that starts after its commit is done:
at once on a notification, within REVOCATION_POLL_INTERVAL_SECONDS without one, and a request
is never answered from a set older than the staleness bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import asyncpg

from micropay_common.errors import ServiceUnavailable, Unauthorized
from micropay_common.jobs import backoff_delay, wait_until_set
from micropay_common.services import SERVICES, ServiceName
from micropay_common.wakeup import Listener

if TYPE_CHECKING:
    from micropay_common.security import AuthenticatedUser
    from micropay_common.settings import ServiceSettings

logger = logging.getLogger("micropay.revocation")

REVOCATIONS_CHANNEL = "micropay_revocations"
"""The PostgreSQL channel a committed revocation is announced on (no payload is trusted)."""
REVOKED_TOKENS = f"{SERVICES[ServiceName.AUTH].schema}.revoked_tokens"
"""The deny-list table; every service role may read its key, expiry and revocation time."""
READ_OVERLAP_SECONDS = 10.0
"""How far back past the previous read each read looks: a logout stamps its row moments before
its commit (`clock_timestamp()`, after its call to Cognito), so a row committed after a read may
carry a time before it; the overlap covers that gap many times over."""
FULL_READ_INTERVAL_SECONDS = 60.0
"""Besides start and reconnects, everything is read again this often, whatever the overlap."""
RECONNECT_MAX_SECONDS = 2.0
"""The longest wait between two attempts while the database cannot be read (a request that
needs the set brings the next one forward, at most once per poll interval)."""
FIRST_READ_TIMEOUT_SECONDS = 5.0
"""How long start-up waits for the first read before serving with a stale set (503 to users)."""
READ_TIMEOUT_SECONDS = 5.0
"""The longest one read of the table may take, and a request waits for one. Freshness is judged
by when a read began against when the request asked, never by when the answer was handled, so
a loop slowed by a burst of requests delays answers without refusing anyone; a read that fails
answers its waiters at once (503)."""

# One statement gives the database's clock even when no row matches (the LEFT JOIN), so the
# next read's lower bound is on the same clock as the rows' `revoked_at`.
_READ_SINCE = f"""
SELECT statement_timestamp() AS read_at, r.origin_jti, r.expires_at
FROM (SELECT 1) AS one
LEFT JOIN {REVOKED_TOKENS} AS r
  ON r.revoked_at >= $1 AND r.expires_at > statement_timestamp()
"""  # noqa: S608 (a constant of our own, no input)
_READ_ALL = f"""
SELECT statement_timestamp() AS read_at, r.origin_jti, r.expires_at
FROM (SELECT 1) AS one
LEFT JOIN {REVOKED_TOKENS} AS r ON r.expires_at > statement_timestamp()
"""  # noqa: S608 (a constant of our own, no input)


def revocation_key(user: AuthenticatedUser) -> str:
    """The deny-list key of a token: its sign-in (`origin_jti`), shared by refreshed tokens."""
    return (
        user.origin_jti
        or str(user.claims.get("jti") or "")
        or hashlib.sha256(user.token.encode()).hexdigest()
    )


class TokenRevoked(Unauthorized):
    """401: the access token belongs to a sign-in that was ended by logout."""

    type = "token_revoked"
    title = "Token revoked"

    def __init__(self, **extra: Any) -> None:
        super().__init__("The access token has been revoked; sign in again.", **extra)


class RevocationStateUnavailable(ServiceUnavailable):
    """503: this replica cannot confirm its deny-list is current, so it admits no user token."""

    type = "revocation_state_unavailable"
    title = "Revocation state unavailable"

    def __init__(self) -> None:
        super().__init__(
            "The list of revoked sign-ins cannot be confirmed current; retry shortly.",
            retry_after=2,
        )


class DenySet:
    """Revoked sign-in keys with the time each may be forgotten, and when the set was confirmed.

    `admits` is what every request pays: one dict lookup and one clock read. Only a user token
    meeting a set that no read confirmed lately takes the slow path (`recheck`): it asks the
    feed for a read and waits until one that began at most the staleness bound before it asked
    has succeeded, so a replica whose loop was merely busy does not refuse anyone, and one that
    cannot read answers 503 as soon as its read fails.
    """

    def __init__(
        self, *, max_staleness_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_staleness_seconds = max_staleness_seconds
        self.clock = clock
        """The monotonic clock freshness is measured on."""
        self.read_now: Callable[[], bool] | None = None
        """Set by the feed: asks it to read at once; False when it cannot try now."""
        self._expiry: dict[str, float] = {}
        self._confirmed_at: float | None = None
        self._waiters: list[asyncio.Future[bool]] = []

    def __len__(self) -> int:
        return len(self._expiry)

    def __contains__(self, key: object) -> bool:
        return key in self._expiry

    def add(self, key: str, expires_at: float) -> None:
        """Deny `key` until `expires_at` (Unix time); a later time wins."""
        if expires_at > self._expiry.get(key, 0.0):
            self._expiry[key] = expires_at

    def confirm(self, as_of: float) -> None:
        """Note a successful read of the table that began at `as_of` (this set's clock)."""
        if self._confirmed_at is None or as_of > self._confirmed_at:
            self._confirmed_at = as_of
        self._answer_waiters(read_succeeded=True)

    def read_failed(self) -> None:
        """Note a failed read: requests waiting for one are answered now (503), not at timeout."""
        self._answer_waiters(read_succeeded=False)

    def _answer_waiters(self, *, read_succeeded: bool) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(read_succeeded)

    def is_fresh(self) -> bool:
        """Whether a read that began within the staleness bound confirmed the set."""
        return self._confirmed_since(self.clock() - self.max_staleness_seconds)

    def _confirmed_since(self, instant: float) -> bool:
        return self._confirmed_at is not None and self._confirmed_at >= instant

    def prune(self, now: float | None = None) -> int:
        """Forget the keys whose tokens have all expired; how many were dropped."""
        now = time.time() if now is None else now
        expired = [key for key, expiry in self._expiry.items() if expiry <= now]
        for key in expired:
            del self._expiry[key]
        return len(expired)

    def admits(self, user: AuthenticatedUser) -> bool:
        """Raise TokenRevoked for a revoked sign-in; False for a user token on a stale set.

        Service accounts are not held to freshness: they never log out, and their calls
        (events, holds) must not stop because this replica's feed is reconnecting.
        """
        if revocation_key(user) in self._expiry:
            raise TokenRevoked()
        return user.service is not None or self.is_fresh()

    async def recheck(self, user: AuthenticatedUser) -> None:
        """After `admits` said stale: read now and check again; RevocationStateUnavailable if
        the read fails or none succeeds within READ_TIMEOUT_SECONDS."""
        if not await self._wait_confirmed_since(self.clock() - self.max_staleness_seconds):
            raise RevocationStateUnavailable()
        if revocation_key(user) in self._expiry:
            raise TokenRevoked()

    async def _wait_confirmed_since(self, instant: float) -> bool:
        """Wait for a successful read that began at `instant` or later; False once one fails."""
        deadline = self.clock() + READ_TIMEOUT_SECONDS
        while not self._confirmed_since(instant):
            remaining = deadline - self.clock()
            if remaining <= 0 or self.read_now is None or not self.read_now():
                return False
            waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                # A read already under way may have begun too early: then wait for the next.
                # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancellation that
                # arrives as the awaited result does.
                async with asyncio.timeout(remaining):
                    if not await waiter:
                        return False
            except TimeoutError:
                return False
        return True


class RevocationFeed:
    """Keeps one DenySet current from `auth.revoked_tokens`: woken by NOTIFY, reads often.

    It reads on the process's `Listener` connection, which also hears its channel: a
    notification or a lost connection wakes it, and a new connection makes it read everything.
    """

    def __init__(
        self,
        deny_set: DenySet,
        database_url: str,
        *,
        poll_interval_seconds: float,
        application_name: str,
        listener: Listener | None = None,
    ) -> None:
        self.deny_set = deny_set
        self.database_url = database_url
        self.poll_interval_seconds = poll_interval_seconds
        self.application_name = application_name
        self.reads = 0
        """Successful reads so far (for tests and debugging)."""
        self._owns_listener = listener is None
        self.listener = listener or Listener(database_url, application_name=application_name)
        """The LISTEN connection it reads on (its own unless the process's is given)."""
        self._read_on: asyncpg.Connection | None = None
        self._wake = asyncio.Event()
        self._since: datetime | None = None
        self._full_read_at = float("-inf")
        self._failures = 0
        self._attempted_at = float("-inf")
        self._task: asyncio.Task[None] | None = None
        deny_set.read_now = self._read_now

    @classmethod
    def from_settings(
        cls, settings: ServiceSettings, listener: Listener | None = None
    ) -> RevocationFeed:
        """A feed for the service's database, with a fresh DenySet."""
        return cls(
            DenySet(max_staleness_seconds=settings.revocation_max_staleness_seconds),
            settings.database_url,
            poll_interval_seconds=settings.revocation_poll_interval_seconds,
            application_name=f"{settings.service_name}-revocations",
            listener=listener,
        )

    async def start(self) -> None:
        """Connect and read everything (a failure is logged: the set stays stale), then follow."""
        self._wake = await self.listener.subscribe(REVOCATIONS_CHANNEL)
        if self._owns_listener:
            await self.listener.start()
        try:
            async with asyncio.timeout(FIRST_READ_TIMEOUT_SECONDS):
                await self.refresh()
        except Exception as exc:
            logger.warning("revocations: first read failed; user tokens wait for one: %r", exc)
            await self.disconnect()
        self._task = asyncio.create_task(self._follow(), name="revocation feed")

    async def stop(self) -> None:
        """Stop following (and close the connection, when it is the feed's own)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.listener.unsubscribe(REVOCATIONS_CHANNEL, self._wake)
        if self._owns_listener:
            await self.listener.stop()

    async def refresh(self) -> int:
        """One read of the table into the set (connecting first if needed); rows read."""
        async with self.listener.connection() as connection:
            if connection is not self._read_on:
                # A new connection: notifications may have been missed, read everything.
                self._read_on = connection
                self._since = None
            started = self.deny_set.clock()
            full = self._since is None or started - self._full_read_at >= FULL_READ_INTERVAL_SECONDS
            timeout = max(self.deny_set.max_staleness_seconds, READ_TIMEOUT_SECONDS)
            if full:
                rows = await connection.fetch(_READ_ALL, timeout=timeout)
            else:
                rows = await connection.fetch(_READ_SINCE, self._since, timeout=timeout)
        found = 0
        for row in rows:
            if row["origin_jti"] is not None:
                self.deny_set.add(row["origin_jti"], row["expires_at"].timestamp())
                found += 1
        self._since = rows[0]["read_at"] - timedelta(seconds=READ_OVERLAP_SECONDS)
        if full:
            self._full_read_at = started
        self.deny_set.prune()
        self.deny_set.confirm(started)
        self.reads += 1
        return found

    def wake(self) -> None:
        """Read again now (a notification arrived, or the connection ended)."""
        self._wake.set()

    async def disconnect(self) -> None:
        """Drop the connection; the next read reconnects and reads everything."""
        self._read_on = None
        self._since = None
        await self.listener.disconnect()

    def _read_now(self) -> bool:
        if self._task is None or self._task.done():
            return False
        # While reconnecting after failures, requests may bring the next attempt forward but
        # not below one per poll interval: an outage must not cost a connection per request.
        if (
            self._failures
            and self.deny_set.clock() - self._attempted_at < self.poll_interval_seconds
        ):
            return False
        self.wake()
        return True

    async def _follow(self) -> None:
        while True:
            delay = self.poll_interval_seconds
            if self._failures:
                delay = backoff_delay(
                    self._failures, base=self.poll_interval_seconds, cap=RECONNECT_MAX_SECONDS
                )
            # Not asyncio.wait_for: on 3.11 it swallows a cancellation (stop) that arrives as the
            # event is set, and the feed would then wait out a whole poll interval.
            await wait_until_set(self._wake, delay)
            # Cleared before the read: a notification that arrives during it wakes one more.
            self._wake.clear()
            self._attempted_at = self.deny_set.clock()
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failures += 1
                logger.warning(
                    "revocations: read failed (%d in a row); user tokens are refused until "
                    "one succeeds: %r",
                    self._failures,
                    exc,
                    extra={"failures": self._failures},
                )
                self.deny_set.read_failed()
                await self.disconnect()
                # Closing the connection fired its termination listener: not a reason to retry.
                self._wake.clear()
            else:
                if self._failures:
                    logger.info("revocations: reading again after %d failures", self._failures)
                self._failures = 0
