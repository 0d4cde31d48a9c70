"""Keyed resources: the row a request creates is its own idempotency record.

For effects at an outside provider (a charge or a refund at Stripe), which cannot commit in our
transaction, so no response can be stored with them. Instead the resource's row — unique per
user and Idempotency-Key, with the request's fingerprint and a lease — is committed *before*
the provider is called, and every answer is read from the row as it is then: a retry with the
same key and body replays a settled row, resumes an unsettled one whose lease is free, and is
told 409 `idempotency_key_in_use` while another request (or a reconciler) drives it.

Usage in a driver (the router reads the key with `read_keyed_request`)::

    submission = await keyed_resources.submit(
        self.sessionmaker,
        Payment,
        keyed,
        find=lambda session: repository.get_by_key(session, user_id, keyed.key),
        create=insert_payment,  # None when a concurrent request took the key meanwhile
        drive=self.drive,
        resumable=("processing",),
        lease_seconds=self.settings.lease_seconds,
        conflict_detail="This Idempotency-Key was first used with a different request body; …",
    )
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from micropay_common.idempotency import leases
from micropay_common.idempotency.errors import IdempotencyConflict, IdempotencyKeyInUse
from micropay_common.idempotency.fingerprint import fingerprint_of
from micropay_common.idempotency.header import answer_headers, required_key
from micropay_common.idempotency.leases import Leased


@dataclass(frozen=True)
class KeyedRequest:
    """A request's required Idempotency-Key and its fingerprint."""

    key: str
    fingerprint: str

    def headers(self, *, replayed: bool) -> dict[str, str]:
        """The headers of the answer: the key echoed, and whether it repeats a stored one."""
        return answer_headers(self.key, replayed=replayed)


async def read_keyed_request(request: Request) -> KeyedRequest:
    """The request's Idempotency-Key (400 when missing or malformed) and fingerprint."""
    return KeyedRequest(key=required_key(request), fingerprint=await fingerprint_of(request))


class KeyedRow(Leased, Protocol):
    """A leased row that records the fingerprint of the request that created it."""

    @property
    def request_hash(self) -> str | None:
        """The fingerprint of the request that created the row."""


KeyedRowT = TypeVar("KeyedRowT", bound=KeyedRow)
ResourceT = TypeVar("ResourceT")


@dataclass(frozen=True)
class Submission(Generic[ResourceT]):
    """The resource a request made or found, and whether the answer repeats an earlier one."""

    resource: ResourceT
    replayed: bool


async def submit(
    sessionmaker: async_sessionmaker[AsyncSession],
    model: type[KeyedRowT],
    keyed: KeyedRequest,
    *,
    find: Callable[[AsyncSession], Awaitable[KeyedRowT | None]],
    create: Callable[[AsyncSession], Awaitable[KeyedRowT | None]],
    drive: Callable[[KeyedRowT], Awaitable[KeyedRowT]],
    resumable: Sequence[str],
    lease_seconds: float,
    conflict_detail: str,
) -> Submission[KeyedRowT]:
    """Create the resource for this key and drive it, or answer from the one the key made.

    `find` reads the caller's row for the key; `create` inserts it holding a lease (None when
    a concurrent request inserted it first); `drive` takes a row whose lease the caller holds
    to the provider. A found row in one of the `resumable` statuses is driven again if its
    lease is free; in any other status it is settled and replayed as it stands.
    """
    async with sessionmaker() as session, session.begin():
        # Looking first answers a retry from its row without re-checking the request's rules
        # against today's state (a fully refunded payment, say).
        existing = await find(session)
        created = None
        if existing is None:
            created = await create(session)
            if created is None:
                existing = await find(session)
    if created is not None:
        return Submission(await drive(created), replayed=False)
    if existing is None:  # pragma: no cover - keyed rows are never deleted
        raise IdempotencyKeyInUse("This Idempotency-Key is changing hands; retry shortly.")
    if existing.request_hash != keyed.fingerprint:
        raise IdempotencyConflict(conflict_detail)
    if existing.status not in resumable:
        return Submission(existing, replayed=True)
    async with sessionmaker() as session, session.begin():
        claimed = await leases.claim(session, model, existing.id, lease_seconds, resumable)
    if claimed is None:
        raise IdempotencyKeyInUse(
            "A request with this Idempotency-Key is still being processed; retry shortly.",
            retry_after=2,
        )
    return Submission(await drive(claimed), replayed=False)
