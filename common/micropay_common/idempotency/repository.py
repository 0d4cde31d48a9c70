"""SQL of the `idempotency_keys` table, where stored responses are kept per user and key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Row, bindparam, delete, func, select, text, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from micropay_common.tables import idempotency_keys


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

    def lock_timeout_setting(self) -> str:
        """The lock timeout as PostgreSQL's `lock_timeout` setting takes it."""
        return f"{max(1, round(self.lock_timeout_seconds * 1000))}ms"


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

_DELETE_KEY = delete(idempotency_keys).where(idempotency_keys.c.id == bindparam("record_id"))

_DELETE_EXPIRED_KEYS = delete(idempotency_keys).where(idempotency_keys.c.expires_at < func.now())

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


async def insert(session: AsyncSession, claim: Claim) -> int | None:
    """Insert the key row, waiting at most the claim's lock timeout; None when the key exists.

    A wait longer than the lock timeout raises the database's lock_not_available error.
    """
    parameters = {
        "owner": claim.owner,
        "key": claim.key,
        "method": claim.method,
        "path": claim.path,
        "fingerprint": claim.fingerprint,
        "ttl_hours": claim.ttl_hours,
        "lock_timeout": claim.lock_timeout_setting(),
    }
    record_id = (await session.execute(_CLAIM_KEY, parameters)).scalar_one()
    return None if record_id is None else int(record_id)


async def find(session: AsyncSession, owner: str, key: str) -> Row[Any] | None:
    """The user's key row with its stored response and whether it has expired."""
    result = await session.execute(_EXISTING_KEY, {"owner": owner, "key": key})
    return result.one_or_none()


async def delete_if_expired(session: AsyncSession, record_id: int) -> None:
    """Delete the key row if it has expired (so that the key counts as new)."""
    await session.execute(_DELETE_EXPIRED_KEY, {"record_id": record_id})


async def delete_key(session: AsyncSession, record_id: int) -> None:
    """Delete the key row."""
    await session.execute(_DELETE_KEY, {"record_id": record_id})


async def store_response(
    session: AsyncSession, record_id: int, status: int, body: Any, media_type: str | None
) -> None:
    """Keep the answer in the key row, which completes it."""
    await session.execute(
        _STORE_RESPONSE,
        {"record_id": record_id, "status": status, "body": body, "media_type": media_type},
    )


async def delete_expired(session: AsyncSession) -> int:
    """Delete every expired key row; how many there were."""
    # A DELETE always yields a CursorResult; the session's signature just does not say so.
    result = cast("CursorResult[Any]", await session.execute(_DELETE_EXPIRED_KEYS))
    return result.rowcount
