"""The periodic-job helper: outages back off and recover, errors never stop a job, cancel does."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import pytest
from sqlalchemy import text

from micropay_common.db import create_engine, create_sessionmaker
from micropay_common.jobs import outage_delay, run_periodically
from micropay_testing.gate import DatabaseGate
from micropay_testing.polling import eventually


@contextlib.asynccontextmanager
async def running(job: Coroutine[Any, Any, Any]) -> AsyncIterator[asyncio.Task[Any]]:
    """Run a job in the background; cancel it, and require it to stop at once, on the way out."""
    task = asyncio.create_task(job)
    try:
        yield task
    finally:
        task.cancel()
        started = time.monotonic()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=1.0)
        assert time.monotonic() - started < 1.0


def job_records(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "job", None) == name]


def test_outage_delays_grow_to_the_cap_with_jitter_in_the_upper_half():
    ceilings = [outage_delay(n, base=1.0, cap=30.0, rng=lambda: 1.0) for n in range(1, 8)]
    assert ceilings == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert outage_delay(3, base=1.0, cap=30.0, rng=lambda: 0.0) == 2.0


async def test_a_database_outage_is_retried_with_growing_delays_and_the_job_resumes(
    service_settings, caplog
):
    gate = DatabaseGate(service_settings("transactions").database_url)
    await gate.open()
    engine = create_engine(service_settings("transactions", database_url=gate.url), "transactions")
    sessionmaker = create_sessionmaker(engine)
    passes: list[str] = []

    async def one_pass() -> None:
        async with sessionmaker() as session:
            passes.append(await session.scalar(text("SELECT current_user")))

    caplog.set_level(logging.INFO, logger="micropay.jobs")
    job = run_periodically(
        "probe",
        one_pass,
        interval_seconds=0.02,
        retry_base_seconds=0.05,
        retry_max_seconds=0.4,
        rng=lambda: 1.0,
    )
    try:
        async with running(job):
            await eventually(lambda: len(passes) >= 2)
            await gate.close()
            # A pass in flight may still finish: count from the first failure on.

            def outages() -> list[logging.LogRecord]:
                return [r for r in job_records(caplog, "probe") if hasattr(r, "retry_in_seconds")]

            await eventually(lambda: len(outages()) >= 5, within=10)
            delays = [r.retry_in_seconds for r in outages()]  # type: ignore[attr-defined]
            assert delays[:5] == [0.05, 0.1, 0.2, 0.4, 0.4]
            assert all(r.levelno == logging.WARNING for r in outages())
            failures_before = len(outages())
            passes_before = len(passes)

            await gate.open()
            await eventually(lambda: len(passes) >= passes_before + 2, within=10)
            back = [r for r in job_records(caplog, "probe") if "is back" in r.getMessage()]
            assert len(back) == 1
            # Recovered: no more outage records once it is back.
            assert len(outages()) <= failures_before + 1
            # Every failure was recognised as the outage it was, none as a crash.
            assert not [r for r in job_records(caplog, "probe") if r.levelno >= logging.ERROR]
    finally:
        await gate.close()
        await engine.dispose()
    assert set(passes) == {"transactions_service"}


async def test_an_unexpected_error_is_logged_and_the_job_carries_on(caplog):
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise RuntimeError(f"bug number {calls}")

    caplog.set_level(logging.INFO, logger="micropay.jobs")
    async with running(run_periodically("flaky", flaky, interval_seconds=0.01)):
        await eventually(lambda: calls >= 5)
    failures = [r for r in job_records(caplog, "flaky") if r.levelno == logging.ERROR]
    assert len(failures) == 2
    assert all(r.exc_info and isinstance(r.exc_info[1], RuntimeError) for r in failures)


async def test_a_pass_with_more_work_left_runs_again_at_once():
    calls = 0

    async def batch() -> bool:
        nonlocal calls
        calls += 1
        return calls < 4  # three full batches, then a short one

    async with running(run_periodically("batches", batch, interval_seconds=60)):
        await eventually(lambda: calls == 4, within=2)
        await asyncio.sleep(0.1)
        assert calls == 4  # the short batch waits for the interval


async def test_the_first_run_can_wait_an_interval():
    calls = 0

    async def one_pass() -> None:
        nonlocal calls
        calls += 1

    job = run_periodically("later", one_pass, interval_seconds=60, first_run_after_seconds=0.2)
    async with running(job):
        await asyncio.sleep(0.1)
        assert calls == 0
        await eventually(lambda: calls == 1, within=2)


async def test_cancellation_stops_a_job_waiting_out_an_outage():
    attempts = 0

    async def unreachable() -> None:
        nonlocal attempts
        attempts += 1
        raise ConnectionRefusedError("connect call failed")

    job = run_periodically(
        "down", unreachable, interval_seconds=60, retry_base_seconds=30, retry_max_seconds=30
    )
    async with running(job):
        await eventually(lambda: attempts == 1)
    # `running` required the job to end within a second of the cancel, mid-backoff.


async def test_cancellation_stops_a_job_mid_pass():
    started = asyncio.Event()

    async def slow() -> None:
        started.set()
        await asyncio.sleep(60)

    async with running(run_periodically("slow", slow, interval_seconds=60)):
        await asyncio.wait_for(started.wait(), timeout=1)
