"""The Idempotency-Key header: reading and validating it, and the headers of the answer."""

from __future__ import annotations

import re

from fastapi import Request

from micropay_common.idempotency.errors import IdempotencyKeyRequired, InvalidIdempotencyKey

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"

_VALID_KEY = re.compile(r"[\x20-\x7e]{1,255}")


def optional_key(request: Request) -> str | None:
    """The request's Idempotency-Key, None without one; 400 when repeated or malformed."""
    values = request.headers.getlist(IDEMPOTENCY_KEY_HEADER)
    if not values:
        return None
    if len(values) > 1 or not _VALID_KEY.fullmatch(values[0]):
        raise InvalidIdempotencyKey(
            f"The {IDEMPOTENCY_KEY_HEADER} header must be one value of 1 to 255 printable "
            "ASCII characters."
        )
    return values[0]


def required_key(request: Request) -> str:
    """The request's Idempotency-Key; 400 when missing, repeated or malformed."""
    key = optional_key(request)
    if key is None:
        raise IdempotencyKeyRequired(
            f"This endpoint requires an {IDEMPOTENCY_KEY_HEADER} header (for example a UUID)."
        )
    return key


def answer_headers(key: str, *, replayed: bool) -> dict[str, str]:
    """The headers of a keyed answer: the key echoed, and whether it repeats a stored one."""
    headers = {IDEMPOTENCY_KEY_HEADER: key}
    if replayed:
        headers[REPLAYED_HEADER] = "true"
    return headers
