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
it, while anything the endpoint does around `run` happens on every attempt (and a 4xx from the
work rolls back the whole transaction, what was done before `run` included).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, cast

from fastapi import Depends, FastAPI, Header, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy import bindparam, delete, func, select, text, update
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
            return _render(status_code, _json_ready(await work()), {})
        headers = {IDEMPOTENCY_KEY_HEADER: self.key}
        try:
            result = await work()
        except ProblemError as exc:
            if exc.status >= 500:
                raise
            return await self._refuse(exc, headers)
        body = None if status_code == 204 else _json_ready(result)
        await self._store(status_code, body, None if status_code == 204 else "application/json")
        return _render(status_code, body, headers)

    async def _refuse(self, exc: ProblemError, headers: dict[str, str]) -> Response:
        # Undoing the work by rolling back the whole transaction, rather than wrapping every
        # execution in a savepoint, keeps two round trips off every successful request. The
        # rollback releases the key, so it is claimed again: if a concurrent request with the
        # same key got it meanwhile, its answer is the one that stands and the one returned.
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
        await self.session.execute(
            _STORE_RESPONSE,
            {"record_id": self.record_id, "status": status, "body": body, "media_type": media_type},
        )
        self.completed = True

    def _replay_response(self, stored: StoredResponse) -> Response:
        headers = {IDEMPOTENCY_KEY_HEADER: self.key or "", REPLAYED_HEADER: "true"}
        if stored.media_type is None:
            return Response(status_code=stored.status, headers=headers)
        return JSONResponse(
            stored.body, status_code=stored.status, headers=headers, media_type=stored.media_type
        )


def _json_ready(result: Any) -> Any:
    """The result as JSON-ready data; pydantic's own serializer for models (the common case)."""
    if isinstance(result, BaseModel):
        return result.model_dump(mode="json", by_alias=True)
    return jsonable_encoder(result)


def _render(status_code: int, body: Any, headers: dict[str, str]) -> Response:
    if status_code == 204:
        return Response(status_code=204, headers=headers)
    return JSONResponse(body, status_code=status_code, headers=headers)


def _optional_key(request: Request) -> str | None:
    values = request.headers.getlist(IDEMPOTENCY_KEY_HEADER)
    if not values:
        return None
    if len(values) > 1 or not _VALID_KEY.fullmatch(values[0]):
        raise InvalidIdempotencyKey(
            f"The {IDEMPOTENCY_KEY_HEADER} header must be one value of 1 to 255 printable "
            "ASCII characters."
        )
    return values[0]


def _required_key(request: Request) -> str:
    key = _optional_key(request)
    if key is None:
        raise IdempotencyKeyRequired(
            f"This endpoint requires an {IDEMPOTENCY_KEY_HEADER} header (for example a UUID)."
        )
    return key


async def fingerprint_of(request: Request) -> str:
    """`request_fingerprint` of the request being served."""
    return request_fingerprint(
        request.method, request.url.path, request.url.query, await request.body()
    )


@dataclass(frozen=True)
class KeyedRequest:
    """A request's required Idempotency-Key and its fingerprint.

    For endpoints that keep their own idempotency records (a payment, a refund) instead of
    `idem.run`.
    """

    key: str
    fingerprint: str

    def headers(self, *, replayed: bool) -> dict[str, str]:
        """The headers of the answer: the key echoed, and whether it repeats a stored one."""
        headers = {IDEMPOTENCY_KEY_HEADER: self.key}
        if replayed:
            headers[REPLAYED_HEADER] = "true"
        return headers


async def read_keyed_request(request: Request) -> KeyedRequest:
    """The request's Idempotency-Key (400 when missing or malformed) and fingerprint."""
    return KeyedRequest(key=_required_key(request), fingerprint=await fingerprint_of(request))


def _sqlstate(exc: DBAPIError) -> str | None:
    return getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)


@dataclass(frozen=True)
class Claim:
    """What identifies a keyed request, and how long its key is kept and waited for."""

    owner: str
    key: str
    method: str
    path: str
    fingerprint: str
    ttl_hours: int
    lock_timeout_seconds: float


# One round trip: raise lock_timeout, insert the key row, put lock_timeout back. A concurrent
# request holding the same key makes the INSERT wait on the unique index; lock_timeout bounds
# that wait (→ 409 key in use), and the work that follows must wait on its own locks as long
# as it normally would. The CTE `setting` is read by the INSERT, so the timeout is raised
# before the row goes in; the outer SELECT restores it after the INSERT has run, row or not.
_CLAIM_KEY = text(
    """
    WITH setting AS MATERIALIZED (
        SELECT previous, set_config('lock_timeout', :lock_timeout, true) AS raised
        FROM (SELECT current_setting('lock_timeout') AS previous OFFSET 0) AS current
    ), claimed AS (
        INSERT INTO idempotency_keys (owner, key, method, path, request_hash, expires_at)
        SELECT :owner, :key, :method, :path, :fingerprint,
               now() + make_interval(hours => :ttl_hours)
        FROM setting
        ON CONFLICT (owner, key) DO NOTHING
        RETURNING id
    )
    SELECT claimed.id, set_config('lock_timeout', setting.previous, true) AS restored
    FROM setting LEFT JOIN claimed ON true
    """
)

_EXISTING_KEY = select(
    idempotency_keys.c.id,
    idempotency_keys.c.method,
    idempotency_keys.c.path,
    idempotency_keys.c.request_hash,
    idempotency_keys.c.response_status,
    idempotency_keys.c.response_body,
    idempotency_keys.c.response_media_type,
    (idempotency_keys.c.expires_at < func.now()).label("expired"),
).where(idempotency_keys.c.owner == bindparam("owner"), idempotency_keys.c.key == bindparam("key"))

_DELETE_EXPIRED_KEY = delete(idempotency_keys).where(
    idempotency_keys.c.id == bindparam("record_id"), idempotency_keys.c.expires_at < func.now()
)

_STORE_RESPONSE = (
    update(idempotency_keys)
    .where(idempotency_keys.c.id == bindparam("record_id"))
    .values(
        response_status=bindparam("status"),
        response_body=bindparam("body", type_=idempotency_keys.c.response_body.type),
        response_media_type=bindparam("media_type"),
        completed_at=func.now(),
    )
)


async def _claim(session: AsyncSession, claim: Claim) -> tuple[int | None, StoredResponse | None]:
    """Insert the key row (→ its id) or find the completed one to replay (→ its response)."""
    parameters = {
        "owner": claim.owner,
        "key": claim.key,
        "method": claim.method,
        "path": claim.path,
        "fingerprint": claim.fingerprint,
        "ttl_hours": claim.ttl_hours,
        "lock_timeout": f"{max(1, round(claim.lock_timeout_seconds * 1000))}ms",
    }
    for _ in range(_CLAIM_ATTEMPTS):
        try:
            record_id = (await session.execute(_CLAIM_KEY, parameters)).scalar_one()
        except DBAPIError as exc:
            if _sqlstate(exc) == _LOCK_NOT_AVAILABLE:
                raise IdempotencyKeyInUse(
                    "Another request with this Idempotency-Key is still being processed; "
                    "retry shortly.",
                ) from exc
            raise
        if record_id is not None:
            return int(record_id), None
        # READ COMMITTED: this statement's fresh snapshot sees the row that made us conflict.
        row = (
            await session.execute(_EXISTING_KEY, {"owner": claim.owner, "key": claim.key})
        ).one_or_none()
        if row is None:
            continue
        if row.expired:
            await session.execute(_DELETE_EXPIRED_KEY, {"record_id": row.id})
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
        key = _required_key(request) if required else _optional_key(request)
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
            ttl_hours=request.app.state.settings.idempotency_ttl_hours,
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
            await session.execute(
                delete(idempotency_keys).where(idempotency_keys.c.id == idem.record_id)
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
