"""Wake-ups at commit: `announce` in the writer's transaction, one `Listener` per process, and
jobs that sleep until woken. Real PostgreSQL; the jobs' poll intervals are far longer than the
tests, so only a wake-up can explain a pass."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from micropay_common.db import create_engine, create_sessionmaker
from micropay_common.jobs import run_periodically
from micropay_common.services import SERVICES, ServiceName
from micropay_common.wakeup import Listener, announce
from micropay_testing.polling import eventually
from micropay_testing.processes import free_port
from stack.postgres import connect

NEVER = 3600.0
"""A poll interval no test lives to see."""


@pytest.fixture(scope="module")
async def admin(database: Any) -> AsyncIterator[Any]:
    """A superuser connection (to end other backends)."""
    conn = await connect(database.admin_url)
    yield conn
    await conn.close()


@pytest.fixture
async def listener(service_settings: Callable[..., Any]) -> AsyncIterator[Listener]:
    """A started listener on the payment role's connection, under a name of its own."""
    started = Listener(
        service_settings("payment").database_url,
        application_name=f"test-listener-{uuid.uuid4().hex[:8]}",
    )
    await started.start()
    yield started
    await started.stop()


@pytest.fixture
async def writer(service_settings: Callable[..., Any]) -> AsyncIterator[Any]:
    """Sessions of the payment service, to announce from."""
    engine = create_engine(service_settings("payment"), SERVICES[ServiceName.PAYMENT].schema)
    yield create_sessionmaker(engine)
    await engine.dispose()


def channel() -> str:
    """A channel no other test announces on."""
    return f"test_wakeup_{uuid.uuid4().hex[:12]}"


async def test_a_committed_announcement_wakes_its_subscribers_and_a_rolled_back_one_does_not(
    listener, writer
):
    rolled_back, committed = channel(), channel()
    unheard = await listener.subscribe(rolled_back)
    first, second = await listener.subscribe(committed), await listener.subscribe(committed)
    unheard.clear()
    first.clear()
    second.clear()

    async with writer() as session, session.begin():
        await announce(session, rolled_back)
        await session.rollback()
    async with writer() as session, session.begin():
        await announce(session, committed)
        # Not before the commit: the worker must not look for work it cannot see yet.
        await asyncio.sleep(0.1)
        assert not first.is_set()

    await asyncio.wait_for(first.wait(), 5)
    await asyncio.wait_for(second.wait(), 5)
    # One connection hears notifications in commit order: the rolled-back one would be first.
    assert not unheard.is_set()


async def test_an_unsubscribed_event_is_no_longer_set(listener, writer):
    name = channel()
    kept, dropped = await listener.subscribe(name), await listener.subscribe(name)
    listener.unsubscribe(name, dropped)
    kept.clear()
    dropped.clear()
    async with writer() as session, session.begin():
        await announce(session, name)
    await asyncio.wait_for(kept.wait(), 5)
    assert not dropped.is_set()


async def test_after_its_connection_is_killed_the_listener_reconnects_and_wakes_again(
    listener, writer, admin
):
    name = channel()
    woken = await listener.subscribe(name)
    assert listener.connects == 1

    killed = await admin.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
        listener.application_name,
    )
    assert killed == 1
    await eventually(
        lambda: listener.connects == 2 and listener.connected, within=10, interval=0.01
    )
    # The loss and the new connection wake every subscriber: announcements between went unheard.
    assert woken.is_set()

    woken.clear()
    async with writer() as session, session.begin():
        await announce(session, name)
    await asyncio.wait_for(woken.wait(), 5)


async def test_a_listener_that_cannot_connect_at_start_keeps_trying(service_settings, writer):
    settings = service_settings("payment")
    nowhere = make_url(settings.database_url).set(port=free_port())
    late = Listener(
        nowhere.render_as_string(hide_password=False),
        application_name="test-listener-unreachable",
    )
    await late.start()
    try:
        assert not late.connected
        # Pointed at the database, the next attempt connects and listens.
        late.database_url = settings.database_url
        await eventually(lambda: late.connected, within=10, interval=0.01)
        name = channel()
        woken = await late.subscribe(name)
        woken.clear()
        async with writer() as session, session.begin():
            await announce(session, name)
        await asyncio.wait_for(woken.wait(), 5)
    finally:
        await late.stop()


async def test_a_job_woken_by_a_commit_runs_without_waiting_for_its_interval(listener, writer):
    name = channel()
    wake = await listener.subscribe(name)
    passes = 0
    first_pass = asyncio.Event()

    async def one_pass() -> bool:
        nonlocal passes
        passes += 1
        first_pass.set()
        return False

    task = asyncio.create_task(
        run_periodically("woken", one_pass, interval_seconds=NEVER, wake=wake)
    )
    try:
        await asyncio.wait_for(first_pass.wait(), 5)
        await asyncio.sleep(0.1)
        assert passes == 1
        async with writer() as session, session.begin():
            await announce(session, name)
        await eventually(lambda: passes == 2, within=5, interval=0.01)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
