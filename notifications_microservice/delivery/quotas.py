"""Sending quotas: a token bucket per provider, shared by every send of the worker.

SES allows `MaxSendRate` messages a second (read with `GetSendQuota` at start and every
SES_QUOTA_REFRESH_SECONDS); SNS allows a publish rate per account and region
(SNS_PUBLISH_RATE_PER_SECOND). A send takes its tokens before it calls the provider, so the
worker keeps under the rate instead of meeting throttling answers; when one comes anyway (another
sender on the account), the bucket pauses and the message is postponed without counting an
attempt.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

logger = logging.getLogger("micropay.notifications.delivery")

# What SES and SNS answer when a caller goes over a rate: the message is fine, the moment is not.
THROTTLING_ERRORS = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "MaxSendingRateExceeded",
        "Throttled",
        "ThrottledException",
        "TooManyRequestsException",
    }
)
# After a throttling answer: nothing more is sent for this long, and the message comes back after.
THROTTLED_PAUSE_SECONDS = 1.0
# SES's sandbox rate: what the worker assumes until GetSendQuota has answered once.
SES_SANDBOX_RATE = 1.0


class TokenBucket:
    """Allows `rate` tokens a second on average and bursts of up to `burst` tokens.

    A caller reserves its tokens at once and then waits for its turn, so concurrent callers are
    served in the order they asked and the rate holds however many wait. `clock` and `sleep`
    are injectable, so the arithmetic can be checked without waiting.
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self.rate = rate
        self.burst = burst if burst is not None else max(rate, 1.0)
        # When every token reserved so far has been paid for; later than now means waiting.
        self._paid_until = -math.inf  # a new bucket is full

    def set_rate(self, rate: float, burst: float | None = None) -> None:
        """Change the rate (a new quota); reservations already made keep their turn."""
        self.rate = rate
        self.burst = burst if burst is not None else max(rate, 1.0)

    def reserve(self, tokens: float = 1.0) -> float:
        """Reserve `tokens`; returns how many seconds the caller must wait before using them."""
        now = self._clock()
        # A full bucket holds `burst` tokens: time earlier than that refills nothing.
        self._paid_until = max(self._paid_until, now - self.burst / self.rate)
        self._paid_until += tokens / self.rate
        return max(0.0, self._paid_until - now)

    async def acquire(self, tokens: float = 1.0) -> None:
        """Wait until `tokens` may be spent."""
        wait = self.reserve(tokens)
        if wait > 0:
            await self._sleep(wait)

    def pause(self, seconds: float) -> None:
        """No tokens for `seconds` from now (the provider said we went too fast)."""
        self._paid_until = max(self._paid_until, self._clock() + seconds)


def is_throttled(exc: BaseException) -> bool:
    """Whether an AWS error is a rate answer (retry later, not a failed attempt)."""
    return isinstance(exc, ClientError) and (
        exc.response.get("Error", {}).get("Code") in THROTTLING_ERRORS
    )


class SesQuota:
    """SES's sending quota, read from `GetSendQuota` at start and every `refresh_seconds`: the
    rate (`MaxSendRate`) fills the bucket; the 24-hour quota, once used up, holds emails back
    until a later reading shows room again.

    A configured rate (SES_MAX_SEND_RATE) replaces the reading altogether, for stand-ins whose
    quota says nothing real and for accounts that share their quota with other senders; SES
    still answers a send over the daily quota with a throttling error, which postpones it.
    """

    def __init__(
        self,
        read_quota: Callable[[], Awaitable[dict[str, Any]]],
        *,
        refresh_seconds: float,
        configured_rate: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self._read_quota = read_quota
        self.refresh_seconds = refresh_seconds
        self._configured_rate = configured_rate
        self._clock = clock
        self._read_at: float | None = None
        self.bucket = TokenBucket(configured_rate or SES_SANDBOX_RATE, clock=clock, sleep=sleep)
        self.max_24_hour_send: float | None = None
        self.sent_last_24_hours = 0.0

    def due(self) -> bool:
        """Whether the quota should be read again."""
        if self._configured_rate is not None:
            return False
        return self._read_at is None or self._clock() - self._read_at >= self.refresh_seconds

    def daily_quota_used_up(self) -> bool:
        """Whether the last reading showed the 24-hour quota used up."""
        return (
            self.max_24_hour_send is not None and self.sent_last_24_hours >= self.max_24_hour_send
        )

    async def refresh(self) -> None:
        """Read GetSendQuota and set the bucket's rate; an error keeps what is known so far."""
        self._read_at = self._clock()
        try:
            quota = await self._read_quota()
        except (BotoCoreError, ClientError) as exc:
            logger.warning(
                "reading the SES sending quota failed, keeping %.1f/s: %s", self.bucket.rate, exc
            )
            return
        # SES says -1 for an account without a daily quota.
        daily = float(quota.get("Max24HourSend", -1))
        self.max_24_hour_send = daily if daily >= 0 else None
        self.sent_last_24_hours = float(quota.get("SentLast24Hours", 0))
        if self.daily_quota_used_up():
            logger.warning(
                "SES's 24-hour quota is used up (%.0f of %.0f): emails wait",
                self.sent_last_24_hours,
                daily,
            )
        rate = float(quota.get("MaxSendRate") or SES_SANDBOX_RATE)
        if rate != self.bucket.rate:
            logger.info("SES sending rate %.1f/s", rate)
            self.bucket.set_rate(rate)

    async def refresh_if_due(self) -> None:
        """Read the quota when it is time to."""
        if self.due():
            await self.refresh()

    def count_sent(self) -> None:
        """One more email sent since the last reading."""
        self.sent_last_24_hours += 1
