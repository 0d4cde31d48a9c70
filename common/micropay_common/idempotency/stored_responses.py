"""Stored responses: `idem.run` executes a request once per key and replays its answer.

For effects wholly in our own database. The key row is claimed with `INSERT … ON CONFLICT DO
NOTHING` inside the request's own transaction, so PostgreSQL does the locking: a concurrent
request with the same key waits on the unique index until the first one commits (then replays
its stored response) or rolls back (then executes itself). The stored response commits together
with the effect it describes, and a crash leaves nothing behind.

Usage in a router::

    @router.post("/transfers", status_code=201, response_model=TransferOut)
    async def create_transfer(
        body: TransferIn, session: SessionDep, user: CurrentUser, idem: RequiredIdempotencyDep
    ) -> Response:
        return await idem.run(lambda: service.transfer(session, user, body), status_code=201)

Do the work inside `run` only: on a replay `run` returns the stored response without calling
it, while anything the endpoint does around `run` happens on every attempt (and a 4xx from the
work rolls back the whole transaction, what was done before `run` included).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from micropay_common.db import SessionDep
from micropay_common.errors import PROBLEM_JSON, FastJSONResponse, ProblemError, problem_response
from micropay_common.idempotency import repository
from micropay_common.idempotency.errors import IdempotencyConflict, IdempotencyKeyInUse
from micropay_common.idempotency.fingerprint import fingerprint_of
from micropay_common.idempotency.header import (
    IDEMPOTENCY_KEY_HEADER,
    answer_headers,
    optional_key,
    required_key,
)
from micropay_common.idempotency.repository import Claim
from micropay_common.security import CurrentUser
from micropay_common.state import AppState

logger = logging.getLogger("micropay.idempotency")

DEFAULT_LOCK_TIMEOUT_SECONDS = 5.0

_LOCK_NOT_AVAILABLE = "55P03"
# A row can vanish between our INSERT and SELECT (purged, or deleted as expired by a
# concurrent request); a few rounds settle that, more would mean something is wrong.
_CLAIM_ATTEMPTS = 3


@dataclass(frozen=True)
class StoredResponse:
    """What an earlier execution answered, as kept in the key row."""

    status: int
    body: Any
    media_type: str | None


class IdempotentRequest:
    """A request's idempotency state; the endpoint runs its work through `run`."""

    def __init__(
        self,
        *,
        session: AsyncSession,
        path: str,
        key: str | None,
        claim: Claim | None = None,
        record_id: int | None = None,
        replay: StoredResponse | None = None,
    ) -> None:
        self.session = session
        self.path = path
        self.key = key
        self.claim = claim
        self.record_id = record_id
        self.replay = replay
        self.completed = False
        self._ran = False

    @property
    def replayed(self) -> bool:
        """Whether this request repeats a completed one and gets its stored response."""
        return self.replay is not None

    async def run(self, work: Callable[[], Awaitable[Any]], *, status_code: int = 200) -> Response:
        """Execute `work` once per key and answer with its result, or replay the stored answer.

        A 4xx ProblemError is stored and returned like a result, with the work's changes
        undone; a 5xx or any other exception propagates, so the whole transaction, key row
        included, rolls back and a retry executes afresh.
        """
        if self._ran:
            raise RuntimeError("IdempotentRequest.run may be called once per request")
        self._ran = True
        if self.replay is not None:
            return self._replay_response(self.replay)
        if self.key is None:
            return render(status_code, json_ready(await work()), {})
        headers = answer_headers(self.key, replayed=False)
        try:
            result = await work()
        except ProblemError as exc:
            if exc.status >= 500:
                raise
            return await self._refuse(exc, headers)
        body = None if status_code == 204 else json_ready(result)
        await self._store(status_code, body, None if status_code == 204 else "application/json")
        return render(status_code, body, headers)

    async def _refuse(self, exc: ProblemError, headers: dict[str, str]) -> Response:
        # Undoing the work by rolling back the whole transaction, rather than wrapping every
        # execution in a savepoint, keeps two round trips off every successful request. The
        # rollback releases the key, so it is claimed again: if a concurrent request with the
        # same key got it meanwhile, its answer is the one that stands and the one returned.
        # A duplicate waiting on the key usually gets it first; when this claim does, the
        # duplicate replays this refusal instead. Either way the key has one answer.
        if self.claim is None:
            raise RuntimeError("a keyed IdempotentRequest needs its Claim")
        await self.session.rollback()
        self.record_id, replay = await _claim(self.session, self.claim)
        if replay is not None:
            self.replay = replay
            return self._replay_response(replay)
        problem = jsonable_encoder(exc.to_body(self.path))
        await self._store(exc.status, problem, PROBLEM_JSON)
        return problem_response(exc.status, problem, {**exc.headers, **headers})

    async def _store(self, status: int, body: Any, media_type: str | None) -> None:
        if self.record_id is None:
            raise RuntimeError("only a claimed key row can store a response")
        await repository.store_response(self.session, self.record_id, status, body, media_type)
        self.completed = True

    def _replay_response(self, stored: StoredResponse) -> Response:
        return replay_response(self.key or "", stored)


def replay_response(key: str, stored: StoredResponse) -> Response:
    """The stored answer again, marked as a replay."""
    headers = answer_headers(key, replayed=True)
    if stored.media_type is None:
        return Response(status_code=stored.status, headers=headers)
    return FastJSONResponse(
        stored.body, status_code=stored.status, headers=headers, media_type=stored.media_type
    )


def json_ready(result: Any) -> Any:
    """The result as JSON-ready data; pydantic's own serializer for models (the common case)."""
    if isinstance(result, BaseModel):
        return result.model_dump(mode="json", by_alias=True)
    return jsonable_encoder(result)


def render(status_code: int, body: Any, headers: dict[str, str]) -> Response:
    """A fresh answer: the JSON body, or none for a 204."""
    if status_code == 204:
        return Response(status_code=204, headers=headers)
    return FastJSONResponse(body, status_code=status_code, headers=headers)


def _sqlstate(exc: DBAPIError) -> str | None:
    return getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)


async def _claim(session: AsyncSession, claim: Claim) -> tuple[int | None, StoredResponse | None]:
    """Insert the key row (→ its id) or find the completed one to replay (→ its response)."""
    for _ in range(_CLAIM_ATTEMPTS):
        try:
            record_id = await repository.insert(session, claim)
        except DBAPIError as exc:
            if _sqlstate(exc) == _LOCK_NOT_AVAILABLE:
                raise IdempotencyKeyInUse(
                    "Another request with this Idempotency-Key is still being processed; "
                    "retry shortly.",
                ) from exc
            raise
        if record_id is not None:
            return record_id, None
        # READ COMMITTED: this statement's fresh snapshot sees the row that made us conflict.
        row = await repository.find(session, claim.owner, claim.key)
        if row is None:
            continue
        if row.expired:
            await repository.delete_if_expired(session, row.id)
            continue
        if row.method != claim.method or row.path != claim.path:
            raise IdempotencyConflict(
                f"This Idempotency-Key was first used for {row.method} {row.path}; keys are "
                "for retrying the same request. Use a new key for a different request."
            )
        if row.request_hash != claim.fingerprint:
            raise IdempotencyConflict(
                "This Idempotency-Key was first used with a different request body or query; "
                "keys are for retrying the same request. Use a new key for a different request."
            )
        if row.response_status is None:
            # Only reachable if a committed row was never completed; treat it as busy.
            raise IdempotencyKeyInUse("This Idempotency-Key has no stored response yet.")
        return None, StoredResponse(
            status=int(row.response_status),
            body=row.response_body,
            media_type=row.response_media_type,
        )
    raise IdempotencyKeyInUse("This Idempotency-Key is changing hands; retry shortly.")


def idempotency(
    required: bool = False, *, lock_timeout_seconds: float = DEFAULT_LOCK_TIMEOUT_SECONDS
) -> Callable[..., AsyncIterator[IdempotentRequest]]:
    """A dependency (use with `Depends(..., scope="function")`) giving an IdempotentRequest."""
    if lock_timeout_seconds <= 0:
        raise ValueError("lock_timeout_seconds must be positive (0 would wait forever)")
    description = (
        "Unique key (1 to 255 printable ASCII characters, e.g. a UUID) that makes retries of this "
        "request safe: the same key with the same body returns the stored response."
        + (" Required." if required else "")
    )

    async def dependency(
        request: Request,
        session: SessionDep,
        user: CurrentUser,
        # A default rather than Annotated: postponed annotations cannot see `description`.
        idempotency_key: str | None = Header(
            default=None, alias=IDEMPOTENCY_KEY_HEADER, description=description
        ),
    ) -> AsyncIterator[IdempotentRequest]:
        # The header parameter documents the API; the raw headers are read to refuse repeats.
        del idempotency_key
        key = required_key(request) if required else optional_key(request)
        path = request.url.path
        if key is None:
            yield IdempotentRequest(session=session, path=path, key=None)
            return
        claim = Claim(
            owner=user.id,
            key=key,
            method=request.method,
            path=path,
            fingerprint=await fingerprint_of(request),
            ttl_hours=AppState.of(request.app).settings.idempotency_ttl_hours,
            lock_timeout_seconds=lock_timeout_seconds,
        )
        record_id, replay = await _claim(session, claim)
        idem = IdempotentRequest(
            session=session, path=path, key=key, claim=claim, record_id=record_id, replay=replay
        )
        yield idem
        if idem.record_id is not None and not idem.completed:
            # A key row without a response would block retries until it expires.
            logger.warning("%s %s returned without IdempotentRequest.run", request.method, path)
            await repository.delete_key(session, idem.record_id)

    dependency.__name__ = "idempotency_required" if required else "idempotency_optional"
    return dependency


IdempotencyDep = Annotated[
    IdempotentRequest, Depends(idempotency(required=False), scope="function")
]
RequiredIdempotencyDep = Annotated[
    IdempotentRequest, Depends(idempotency(required=True), scope="function")
]
