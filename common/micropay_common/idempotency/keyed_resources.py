"""Keyed resources: the row a request creates is its own idempotency record.

For effects at an outside provider (a charge or a refund at Stripe), which cannot commit in our
transaction, so no response can be stored with them: the endpoint commits its own row, keyed by
the user and the Idempotency-Key with the request's fingerprint, before the provider is called.
This module reads that key and fingerprint the same way the stored responses do.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from micropay_common.idempotency.fingerprint import fingerprint_of
from micropay_common.idempotency.header import answer_headers, required_key


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
