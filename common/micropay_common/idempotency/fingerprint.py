"""What makes two requests with one key the same request: the request's fingerprint."""

from __future__ import annotations

import hashlib
import json

from fastapi import Request


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


async def fingerprint_of(request: Request) -> str:
    """`request_fingerprint` of the request being served."""
    return request_fingerprint(
        request.method, request.url.path, request.url.query, await request.body()
    )
