"""Idempotency-Key handling with Stripe's semantics, as a FastAPI dependency.

The key row is claimed with `INSERT … ON CONFLICT DO NOTHING` inside the request's own
transaction, so PostgreSQL does the locking: a concurrent request with the same key waits on
the unique index until the first one commits (then replays its stored response) or rolls back
(then executes itself). The stored response commits together with the effect it describes,
and a crash leaves nothing behind.

Usage in a router::

    @router.post("/transfers", status_code=201, response_model=TransferOut)
    async def create_transfer(
        body: TransferIn, session: SessionDep, user: CurrentUser, idem: RequiredIdempotencyDep
    ) -> Response:
        return await idem.run(lambda: service.transfer(session, user, body), status_code=201)

Do the work inside `run` only: on a replay `run` returns the stored response without calling
it, while anything the endpoint does around `run` happens on every attempt.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, cast

from fastapi import Depends, FastAPI, Header, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from micropay_common.db import SessionDep
from micropay_common.errors import (
    PROBLEM_JSON,
    BadRequest,
    Conflict,
    ProblemError,
    problem_response,
)
from micropay_common.security import CurrentUser
from micropay_common.tables import idempotency_keys

logger = logging.getLogger("micropay.idempotency")

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
DEFAULT_LOCK_TIMEOUT_SECONDS = 5.0
PURGE_INTERVAL_SECONDS = 600.0

_VALID_KEY = re.compile(r"[\x20-\x7e]{1,255}")
_LOCK_NOT_AVAILABLE = "55P03"
# A row can vanish between our INSERT and SELECT (purged, or deleted as expired by a
# concurrent request); a few rounds settle that, more would mean something is wrong.
_CLAIM_ATTEMPTS = 3


class IdempotencyKeyRequired(BadRequest):
    """400: the endpoint needs an Idempotency-Key header."""

    type = "idempotency_key_required"
    title = "Idempotency-Key required"


class InvalidIdempotencyKey(BadRequest):
    """400: the Idempotency-Key header is not 1 to 255 printable ASCII characters."""

    type = "invalid_idempotency_key"
    title = "Invalid Idempotency-Key"


class IdempotencyConflict(Conflict):
    """409: the key was first used for a different request."""

    type = "idempotency_conflict"
    title = "Keys are for retrying the same request"


class IdempotencyKeyInUse(Conflict):
    """409: another request with this key is still being processed."""

    type = "idempotency_key_in_use"
    title = "Idempotency-Key in use"

    def __init__(self, detail: str | None = None, *, retry_after: int = 1, **extra: Any) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)}, **extra)


def canonical_body(body: bytes) -> bytes:
    """JSON bodies re-serialised with sorted keys and no whitespace; other bodies unchanged."""
    if not body:
        return b""
    try:
        parsed = json.loads(body)
    except ValueError:
        return body
    return json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def request_fingerprint(method: str, path: str, query: str, body: bytes) -> str:
    """sha256 over method, path, query string and canonical body."""
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), query.encode()):
        # Length prefixes keep ("a", "bc") and ("ab", "c") apart.
        digest.update(len(part).to_bytes(4, "big"))
        digest.update(part)
    digest.update(canonical_body(body))
    return digest.hexdigest()


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
        record_id: int | None = None,
        replay: StoredResponse | None = None,
    ) -> None:
        self.session = session
        self.path = path
        self.key = key
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

        A 4xx ProblemError undoes the work's changes (savepoint) and is stored and returned
        like a result; a 5xx or any other exception propagates, so the whole transaction,
        key row included, rolls back and a retry executes afresh.
        """
        if self._ran:
            raise RuntimeError("IdempotentRequest.run may be called once per request")
        self._ran = True
        if self.replay is not None:
            return self._replay_response(self.replay)
        if self.key is None:
            return _render(status_code, jsonable_encoder(await work()), {})
        headers = {IDEMPOTENCY_KEY_HEADER: self.key}
        try:
            async with self.session.begin_nested():
                result = await work()
        except ProblemError as exc:
            if exc.status >= 500:
                raise
            problem = jsonable_encoder(exc.to_body(self.path))
            await self._store(exc.status, problem, PROBLEM_JSON)
            return problem_response(exc.status, problem, {**exc.headers, **headers})
        body = None if status_code == 204 else jsonable_encoder(result)
        await self._store(status_code, body, None if status_code == 204 else "application/json")
        return _render(status_code, body, headers)

    async def _store(self, status: int, body: Any, media_type: str | None) -> None:
        await self.session.execute(
            update(idempotency_keys)
            .where(idempotency_keys.c.id == self.record_id)
            .values(
                response_status=status,
                response_body=body,
                response_media_type=media_type,
                completed_at=func.now(),
            )
        )
        self.completed = True

    def _replay_response(self, stored: StoredResponse) -> Response:
        headers = {IDEMPOTENCY_KEY_HEADER: self.key or "", REPLAYED_HEADER: "true"}
        if stored.media_type is None:
            return Response(status_code=stored.status, headers=headers)
        return JSONResponse(
            stored.body, status_code=stored.status, headers=headers, media_type=stored.media_type
        )


def _render(status_code: int, body: Any, headers: dict[str, str]) -> Response:
    if status_code == 204:
        return Response(status_code=204, headers=headers)
    return JSONResponse(body, status_code=status_code, headers=headers)


def _read_key(request: Request, required: bool) -> str | None:
    values = request.headers.getlist(IDEMPOTENCY_KEY_HEADER)
    if not values:
        if required:
            raise IdempotencyKeyRequired(
                f"This endpoint requires an {IDEMPOTENCY_KEY_HEADER} header (for example a UUID)."
            )
        return None
    if len(values) > 1 or not _VALID_KEY.fullmatch(values[0]):
        raise InvalidIdempotencyKey(
            f"The {IDEMPOTENCY_KEY_HEADER} header must be one value of 1 to 255 printable "
            "ASCII characters."
        )
    return values[0]


def read_idempotency_key(request: Request, *, required: bool) -> str | None:
    """The request's Idempotency-Key (400 when missing but required, or malformed).

    For endpoints that keep their own idempotency records instead of `idem.run`.
    """
    return _read_key(request, required)


def _sqlstate(exc: DBAPIError) -> str | None:
    return getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)


async def _claim(
    session: AsyncSession,
    *,
    owner: str,
    key: str,
    method: str,
    path: str,
    fingerprint: str,
    ttl_hours: int,
    lock_timeout_seconds: float,
) -> tuple[int | None, StoredResponse | None]:
    """Insert the key row (→ its id) or find the completed one to replay (→ its response)."""
    previous = (await session.execute(select(func.current_setting("lock_timeout")))).scalar_one()
    await session.execute(
        select(
            func.set_config("lock_timeout", f"{max(1, round(lock_timeout_seconds * 1000))}ms", True)
        )
    )
    try:
        outcome = await _claim_row(
            session,
            owner=owner,
            key=key,
            method=method,
            path=path,
            fingerprint=fingerprint,
            ttl_hours=ttl_hours,
        )
    except DBAPIError as exc:
        if _sqlstate(exc) == _LOCK_NOT_AVAILABLE:
            raise IdempotencyKeyInUse(
                "Another request with this Idempotency-Key is still being processed; "
                "retry shortly.",
            ) from exc
        raise
    # The work that follows takes its own locks and must wait as long as it normally would.
    await session.execute(select(func.set_config("lock_timeout", previous, True)))
    return outcome


async def _claim_row(
    session: AsyncSession,
    *,
    owner: str,
    key: str,
    method: str,
    path: str,
    fingerprint: str,
    ttl_hours: int,
) -> tuple[int | None, StoredResponse | None]:
    table = idempotency_keys
    for _ in range(_CLAIM_ATTEMPTS):
        inserted = await session.execute(
            insert(table)
            .values(
                owner=owner,
                key=key,
                method=method,
                path=path,
                request_hash=fingerprint,
                expires_at=func.now() + timedelta(hours=ttl_hours),
            )
            .on_conflict_do_nothing(index_elements=[table.c.owner, table.c.key])
            .returning(table.c.id)
        )
        record_id = inserted.scalar_one_or_none()
        if record_id is not None:
            return int(record_id), None
        # READ COMMITTED: this statement's fresh snapshot sees the row that made us conflict.
        row = (
            await session.execute(
                select(
                    table.c.id,
                    table.c.method,
                    table.c.path,
                    table.c.request_hash,
                    table.c.response_status,
                    table.c.response_body,
                    table.c.response_media_type,
                    (table.c.expires_at < func.now()).label("expired"),
                ).where(table.c.owner == owner, table.c.key == key)
            )
        ).one_or_none()
        if row is None:
            continue
        if row.expired:
            await session.execute(
                delete(table).where(table.c.id == row.id, table.c.expires_at < func.now())
            )
            continue
        if row.method != method or row.path != path:
            raise IdempotencyConflict(
                f"This Idempotency-Key was first used for {row.method} {row.path}; keys are "
                "for retrying the same request. Use a new key for a different request."
            )
        if row.request_hash != fingerprint:
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
        key = _read_key(request, required)
        path = request.url.path
        if key is None:
            yield IdempotentRequest(session=session, path=path, key=None)
            return
        settings = request.app.state.settings
        record_id, replay = await _claim(
            session,
            owner=user.id,
            key=key,
            method=request.method,
            path=path,
            fingerprint=request_fingerprint(
                request.method, path, request.url.query, await request.body()
            ),
            ttl_hours=settings.idempotency_ttl_hours,
            lock_timeout_seconds=lock_timeout_seconds,
        )
        idem = IdempotentRequest(
            session=session, path=path, key=key, record_id=record_id, replay=replay
        )
        yield idem
        if record_id is not None and not idem.completed:
            # A key row without a response would block retries until it expires.
            logger.warning("%s %s returned without IdempotentRequest.run", request.method, path)
            await session.execute(
                delete(idempotency_keys).where(idempotency_keys.c.id == record_id)
            )

    dependency.__name__ = "idempotency_required" if required else "idempotency_optional"
    return dependency


IdempotencyDep = Annotated[
    IdempotentRequest, Depends(idempotency(required=False), scope="function")
]
RequiredIdempotencyDep = Annotated[
    IdempotentRequest, Depends(idempotency(required=True), scope="function")
]


async def purge_expired_idempotency_keys(session: AsyncSession) -> int:
    """Delete expired key rows; the caller commits. Returns how many were deleted."""
    # A DELETE always yields a CursorResult; the session's signature just does not say so.
    result = cast(
        "CursorResult[Any]",
        await session.execute(
            delete(idempotency_keys).where(idempotency_keys.c.expires_at < func.now())
        ),
    )
    return result.rowcount


async def idempotency_purge_job(
    app: FastAPI, *, interval_seconds: float = PURGE_INTERVAL_SECONDS
) -> None:
    """Background job: purge expired idempotency keys now and then every interval."""
    sessionmaker: async_sessionmaker[AsyncSession] = app.state.sessionmaker
    while True:
        try:
            async with sessionmaker() as session:
                removed = await purge_expired_idempotency_keys(session)
                await session.commit()
            if removed:
                logger.info("purged %d expired idempotency keys", removed)
        except Exception:
            # A database outage should not turn into a crash-and-restart loop; try next round.
            logger.warning("purging expired idempotency keys failed", exc_info=True)
        await asyncio.sleep(interval_seconds)
