"""Periodic background jobs: one loop and one rule for failures, whatever the job does.

A job is a coroutine function that runs one pass and says whether more work is left.
`run_periodically` runs it forever:

- a pass that reports more work left is followed at once by the next;
- otherwise the next pass runs after the job's interval, or as soon as its `wake` event is set
  (a commit announced work for it: `micropay_common.wakeup`), whichever comes first; the
  interval is then only the safety net for a wake-up that was lost;
- a database outage (as `errors.database_unreachable` recognises it, the same test that turns
  it into a 503 for requests) is logged and the pass retried after a growing delay
  (exponential, capped, jittered), so a database that is down never makes a crash loop;
- any other error is logged and the job carries on at its next run.

Cancellation (the app stopping) ends the job at once, mid-wait or mid-pass. The factory's
supervision, which restarts a job that returned or raised, stays as the last resort.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import NoReturn

from micropay_common.errors import ProblemError, database_unreachable

logger = logging.getLogger("micropay.jobs")

Pass = Callable[[], Awaitable[bool | None]]
"""One pass of a job; True when it stopped with more work left (a full batch)."""

RETRY_BASE_SECONDS = 1.0
RETRY_MAX_SECONDS = 60.0


def backoff_delay(
    attempts: int, *, base: float, cap: float, rng: Callable[[], float] = random.random
) -> float:
    """Seconds to wait after the `attempts`-th failure: full jitter over min(cap, base·2^(n-1))."""
    ceiling: float = min(cap, base * 2.0 ** min(max(attempts - 1, 0), 62))
    return ceiling * rng()


def outage_delay(
    failures: int, *, base: float, cap: float, rng: Callable[[], float] = random.random
) -> float:
    """Seconds to wait after the `failures`-th pass in a row that found no database.

    Between half and all of min(cap, base·2^(n-1)): the wait grows with every failure, and
    the jitter keeps the replicas of a service from retrying in step.
    """
    return backoff_delay(failures, base=base, cap=cap, rng=lambda: 0.5 + 0.5 * rng())


async def run_periodically(
    name: str,
    run_pass: Pass,
    *,
    interval_seconds: float,
    first_run_after_seconds: float = 0.0,
    retry_base_seconds: float = RETRY_BASE_SECONDS,
    retry_max_seconds: float = RETRY_MAX_SECONDS,
    rng: Callable[[], float] = random.random,
    wake: asyncio.Event | None = None,
) -> NoReturn:
    """Run `run_pass` forever under the module's rule for more work, outages and errors."""
    extra = {"job": name}
    if first_run_after_seconds > 0:
        await asyncio.sleep(first_run_after_seconds)
    failures = 0
    while True:
        more = False
        if wake is not None:
            # Cleared before the pass: work announced during it wakes one more pass.
            wake.clear()
        try:
            more = bool(await run_pass())
        except Exception as exc:
            if database_unreachable(exc):
                failures += 1
                delay = outage_delay(
                    failures, base=retry_base_seconds, cap=retry_max_seconds, rng=rng
                )
                logger.warning(
                    "%s: the database is unreachable (%d failed passes in a row); "
                    "retrying in %.2fs: %r",
                    name,
                    failures,
                    delay,
                    exc,
                    extra={**extra, "failures": failures, "retry_in_seconds": delay},
                )
                await asyncio.sleep(delay)
                continue
            if isinstance(exc, ProblemError):
                # A dependency said why it cannot serve now (a 503 of a peer, say): no trace.
                logger.warning("%s: pass skipped: %s", name, exc.detail, extra=extra)
            else:
                logger.exception("%s: pass failed", name, extra=extra)
        else:
            if failures:
                logger.info(
                    "%s: the database is back after %d failed passes", name, failures, extra=extra
                )
                failures = 0
        if not more:
            await _idle(interval_seconds, wake)


async def _idle(seconds: float, wake: asyncio.Event | None) -> None:
    """Sleep `seconds`, or less when `wake` is set meanwhile."""
    if wake is None:
        await asyncio.sleep(seconds)
    else:
        await wait_until_set(wake, seconds)


async def wait_until_set(event: asyncio.Event, timeout_seconds: float) -> bool:
    """Wait until `event` is set or the timeout passes; whether it was set."""
    if not event.is_set():
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(timeout_seconds, 0.0)):
                await event.wait()
    return event.is_set()
