"""The deny-set every replica keeps, and the feed that fills it from `auth.revoked_tokens`.

The feed runs against the test database as the payment service's role (one that only reads
the deny-list), and the revocations are written as the auth service writes them: a row and a
NOTIFY in one transaction.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest

from micropay_common.revocation import (
    REVOCATIONS_CHANNEL,
    DenySet,
    RevocationFeed,
    RevocationStateUnavailable,
    TokenRevoked,
    revocation_key,
)
from micropay_common.security import AuthenticatedUser, JwksCache, TokenVerifier
from micropay_testing.polling import eventually
from stack.bootstrap import AwsResources


def caller(*groups: str) -> AuthenticatedUser:
    """A verified caller of one sign-in, as the verifier would describe it."""
    return AuthenticatedUser(
        id=str(uuid.uuid4()),
        username="someone@example.com",
        groups=frozenset(groups),
        token="token",
        claims={"origin_jti": str(uuid.uuid4()), "exp": int(time.time()) + 3600},
    )


async def revoke(admin: asyncpg.Connection, key: str, *, notify: bool = True) -> None:
    """Deny-list `key` for an hour as logout does: the row and (unless not) the NOTIFY, at once."""
    async with admin.transaction():
        await admin.execute(
            "INSERT INTO auth.revoked_tokens (origin_jti, user_id, expires_at, revoked_at)"
            " VALUES ($1, $2, now() + interval '1 hour', clock_timestamp())",
            key,
            uuid.uuid4(),
        )
        if notify:
            await admin.execute("SELECT pg_notify($1, '')", REVOCATIONS_CHANNEL)


@pytest.fixture
async def verifier(aws: AwsResources) -> AsyncIterator[TokenVerifier]:
    """A verifier with a deny-set that a read has just confirmed."""
    deny_set = DenySet(max_staleness_seconds=60)
    deny_set.confirm(deny_set.clock())
    verifier = TokenVerifier(
        issuer=aws.issuer,
        client_id=aws.client_id,
        jwks=JwksCache(aws.jwks_url, cooldown_seconds=60),
        deny_set=deny_set,
    )
    yield verifier
    await verifier.aclose()


@pytest.fixture
def feed(service_settings: Callable[..., Any]) -> Callable[..., Any]:
    """Start feeds as the payment service's role; each is stopped at the end."""

    @asynccontextmanager
    async def started(poll_interval_seconds: float, name: str) -> AsyncIterator[RevocationFeed]:
        feed = RevocationFeed(
            DenySet(max_staleness_seconds=60),
            service_settings("payment").database_url,
            poll_interval_seconds=poll_interval_seconds,
            application_name=name,
        )
        await feed.start()
        try:
            yield feed
        finally:
            await feed.stop()

    return started


async def test_a_cached_token_is_refused_as_soon_as_its_sign_in_is_revoked(verifier, make_user):
    token = make_user().access_token
    user = await verifier.verify(token)
    assert await verifier.verify(token) is user  # the second answer came from the cache

    assert verifier.deny_set is not None
    verifier.deny_set.add(revocation_key(user), time.time() + 3600)

    with pytest.raises(TokenRevoked) as refused:
        await verifier.verify(token)
    assert refused.value.status == 401
    assert refused.value.type == "token_revoked"


def test_keys_are_forgotten_once_their_tokens_have_expired():
    deny_set = DenySet(max_staleness_seconds=1)
    now = time.time()
    deny_set.add("expired", now - 1)
    deny_set.add("live", now + 60)
    deny_set.add("live", now - 600)  # a repeat with an earlier expiry does not shorten it

    assert deny_set.prune(now) == 1
    assert "expired" not in deny_set
    assert "live" in deny_set
    assert deny_set.prune(now + 61) == 1
    assert len(deny_set) == 0


async def test_a_stale_set_refuses_user_tokens_and_still_admits_service_accounts():
    clock = [1000.0]
    deny_set = DenySet(max_staleness_seconds=1.0, clock=lambda: clock[0])
    user, service = caller(), caller("services", "service-payment")
    # Never confirmed by a read: nothing to trust yet.
    assert not deny_set.admits(user)
    with pytest.raises(RevocationStateUnavailable) as unavailable:
        await deny_set.recheck(user)
    assert unavailable.value.status == 503
    assert unavailable.value.headers["Retry-After"] == "2"
    assert unavailable.value.type == "revocation_state_unavailable"

    deny_set.confirm(1000.0)
    assert deny_set.admits(user)
    clock[0] = 1001.5  # no read for longer than the bound, and no feed to ask for one
    assert not deny_set.admits(user)
    with pytest.raises(RevocationStateUnavailable):
        await deny_set.recheck(user)
    assert deny_set.admits(service)
    # A revoked key is refused whatever the freshness, service account or not.
    deny_set.add(revocation_key(service), time.time() + 60)
    with pytest.raises(TokenRevoked):
        deny_set.admits(service)


async def test_a_read_handled_late_still_admits_and_a_failed_read_refuses_at_once():
    """Freshness is judged by when the read began, not when a busy loop got to its answer."""
    clock = [1000.0]
    deny_set = DenySet(max_staleness_seconds=1.0, clock=lambda: clock[0])
    user = caller()
    reads = iter([998.5, 999.6])  # a read under way began too early; the next one will do

    def read_now() -> bool:
        started = next(reads, None)
        if started is None:
            return False

        def answer() -> None:
            clock[0] += 3.0  # the loop was busy: the answer is handled seconds later
            deny_set.confirm(started)

        asyncio.get_running_loop().call_soon(answer)
        return True

    deny_set.read_now = read_now
    clock[0] = 1000.5
    assert not deny_set.admits(user)
    await deny_set.recheck(user)  # admitted: the second read began after 1000.5 - 1.0
    assert clock[0] == 1006.5

    def read_fails() -> bool:
        asyncio.get_running_loop().call_soon(deny_set.read_failed)
        return True

    deny_set.read_now = read_fails
    clock[0] += 5.0
    with pytest.raises(RevocationStateUnavailable):
        await asyncio.wait_for(deny_set.recheck(user), 1.0)  # at once, not after a timeout


async def test_the_verifier_fails_closed_for_users_when_its_set_is_stale(
    verifier, make_user, service_account_headers
):
    assert verifier.deny_set is not None
    verifier.deny_set.max_staleness_seconds = 0.01
    time.sleep(0.02)  # noqa: ASYNC251 (the set must age; nothing else runs meanwhile)
    with pytest.raises(RevocationStateUnavailable):
        await verifier.verify(make_user().access_token)
    service_token = service_account_headers["payment"]["Authorization"].removeprefix("Bearer ")
    assert (await verifier.verify(service_token)).service == "payment"


async def test_a_notified_revocation_is_applied_without_waiting_for_the_poll(feed, admin):
    key = f"notified-{uuid.uuid4()}"
    # A poll an hour away: only the notification can bring it in.
    async with feed(3600, "test-revocations-notified") as started:
        assert key not in started.deny_set
        await revoke(admin, key)
        await eventually(lambda: key in started.deny_set, within=5, interval=0.01)


async def test_a_notification_alone_denies_nothing(feed, admin):
    async with feed(3600, "test-revocations-forged") as started:
        reads = started.reads
        forged = f"forged-{uuid.uuid4()}"
        # Any role may NOTIFY on any channel; the payload is never read, the table is.
        await admin.execute("SELECT pg_notify($1, $2)", REVOCATIONS_CHANNEL, forged)
        await eventually(lambda: started.reads > reads, within=5, interval=0.01)
        assert forged not in started.deny_set


async def test_stopping_as_a_notification_arrives_stops_at_once(feed):
    async with feed(3600, "test-revocations-stop-woken") as started:
        await eventually(lambda: started.reads >= 2, within=5, interval=0.01)
        await asyncio.sleep(0.05)  # the feed is idle, waiting for a wake-up or the hour
        # The wake-up and the cancellation land in the same turn of the loop: the stop must win,
        # not be swallowed into another hour of waiting.
        started.wake()
        stopping = asyncio.create_task(started.stop())
        stopped, _ = await asyncio.wait({stopping}, timeout=5)
        assert stopping in stopped, "stop() is waiting out the poll interval"


async def test_a_revocation_whose_notification_was_lost_is_found_by_the_periodic_read(feed, admin):
    key = f"unannounced-{uuid.uuid4()}"
    async with feed(0.1, "test-revocations-polled") as started:
        await revoke(admin, key, notify=False)
        await eventually(lambda: key in started.deny_set, within=5, interval=0.01)


async def test_after_its_connection_is_killed_the_feed_reconnects_and_reads_what_it_missed(
    feed, admin
):
    key = f"missed-{uuid.uuid4()}"
    async with feed(0.1, "test-revocations-killed") as started:
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'test-revocations-killed'"
        )
        assert killed == 1
        await revoke(admin, key, notify=False)
        await eventually(lambda: key in started.deny_set, within=10, interval=0.01)
        assert started.deny_set.is_fresh()
