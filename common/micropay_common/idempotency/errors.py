"""The problems an Idempotency-Key is refused with, the same from both mechanisms."""

from __future__ import annotations

from typing import Any

from micropay_common.errors import BadRequest, Conflict


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
