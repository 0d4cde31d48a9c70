"""Per-request context (request id) carried through logs and outgoing calls."""

from __future__ import annotations

import re
import secrets
from contextvars import ContextVar

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)


def new_request_id() -> str:
    """A fresh opaque request id."""
    return secrets.token_hex(16)


def accept_request_id(candidate: str | None) -> str:
    """Keep a client-supplied id when it is safe to echo and log, else make a new one."""
    if candidate and _VALID_REQUEST_ID.match(candidate):
        return candidate
    return new_request_id()


def current_request_id() -> str | None:
    """The id of the request being served, if any."""
    return request_id_var.get()
