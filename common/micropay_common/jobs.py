"""Periodic background jobs: one loop and one rule for failures, whatever the job does.

A job is a coroutine function that runs one pass and says whether more work is left.
`run_periodically` runs it forever:

- a pass that reports more work left is followed at once by the next;
- otherwise the next pass runs after the job's interval;
- a database outage (as `errors.database_unreachable` recognises it, the same test that turns
  it into a 503 for requests) is logged and the pass retried after a growing delay
  (exponential, capped, jittered), so a database that is down never makes a crash loop;
- any other error is logged and the job carries on at its next run.

Cancellation (the app stopping) ends the job at once, mid-wait or mid-pass. The factory's
supervision, which restarts a job that returned or raised, stays as the last resort.
"""

from __future__ import annotations

import asyncio
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
) -> NoReturn:
    """Run `run_pass` forever under the module's rule for more work, outages and errors."""
    extra = {"job": name}
    if first_run_after_seconds > 0:
        await asyncio.sleep(first_run_after_seconds)
    failures = 0
    while True:
        more = False
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
            await asyncio.sleep(interval_seconds)
