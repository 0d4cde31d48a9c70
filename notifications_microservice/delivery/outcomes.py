"""What one send did, and what the worker must record because of it."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

ResultT = TypeVar("ResultT")


@dataclass(frozen=True)
class Sent:
    """The provider accepted the message."""

    provider_message_id: str | None = None
    delivered_to: tuple[str, ...] = ()


@dataclass(frozen=True)
class Retry:
    """A failure worth another attempt, not before `retry_after` seconds when given."""

    error: str
    retry_after: float | None = None
    delivered_to: tuple[str, ...] = ()


@dataclass(frozen=True)
class Failed:
    """A failure no retry can fix."""

    reason: str


@dataclass(frozen=True)
class Deferred:
    """Nothing more was sent: the lease had too little time left to start a send safely."""

    delivered_to: tuple[str, ...] = ()


@dataclass(frozen=True)
class Postponed:
    """Nothing was sent because a part of ours failed (KMS could not open the signing secret):
    try again after `delay` seconds, without counting it against the message's schedule."""

    error: str
    delay: float
    delivered_to: tuple[str, ...] = ()


Outcome = Sent | Retry | Failed | Deferred | Postponed


@dataclass(frozen=True)
class AttemptRecord:
    """One HTTP attempt of a webhook delivery, for the delivery log."""

    endpoint_id: uuid.UUID
    url: str
    succeeded: bool
    status_code: int | None
    response_body: str | None
    error: str | None
    duration_ms: int


@dataclass(frozen=True)
class Result:
    """An outcome plus what it tells about devices and webhook endpoints."""

    outcome: Outcome
    disabled_devices: tuple[tuple[str, str], ...] = ()
    attempt: AttemptRecord | None = None
    disable_endpoint: str | None = None


class LeaseExpiring(Exception):
    """Too little of the lease is left to start another send."""


@dataclass
class Lease:
    """A worker's claim on rows until `deadline` (time.monotonic()), fenced by `token`."""

    token: uuid.UUID
    deadline: float
    margin: float = field(default=1.0)

    @classmethod
    def starting_now(cls, token: uuid.UUID, seconds: float) -> Lease:
        """A lease taken now; measured from before the claim, so it never outlives the row's."""
        return cls(token=token, deadline=time.monotonic() + seconds, margin=min(1.0, seconds / 10))

    def has_time_for(self, seconds: float) -> bool:
        """Whether a send that takes at most `seconds` ends before the lease does."""
        return time.monotonic() + seconds + self.margin < self.deadline

    def ensure_time_for(self, seconds: float) -> None:
        """Raise LeaseExpiring unless a send of at most `seconds` still fits."""
        if not self.has_time_for(seconds):
            raise LeaseExpiring


class Calls:
    """Runs the worker's sends: at most `concurrency` at once, each only if it can still finish
    within the lease."""

    def __init__(self, concurrency: int) -> None:
        self.slots = asyncio.Semaphore(concurrency)

    async def run(
        self, lease: Lease, budget: float, call: Callable[[], Awaitable[ResultT]]
    ) -> ResultT:
        """Await `call()` in a free slot; LeaseExpiring instead when the lease has less than
        `budget` seconds left once the slot is free (waiting for it counts too)."""
        async with self.slots:
            lease.ensure_time_for(budget)
            return await call()
