"""Stored responses claimed and stored by a SQL function: one round trip per keyed request.

The same semantics as `stored_responses` (the key row, the fingerprint, the replay with
`Idempotent-Replayed: true`, 409 `idempotency_conflict` and `idempotency_key_in_use`, a 4xx
stored like a result), for a hot path whose whole effect is one SQL function
(docs/conventions.md, "Hot paths in SQL"). The function takes the claim's values, calls the
schema's `claim_idempotency_key` first, and either answers with what that found (a replay or a
refusal, see `claimed`) or does the work and stores its response, in the implicit transaction
of its one statement, on the app's asyncpg pool (`DirectDep`), in autocommit.

A refusal of the work (the function raised, so nothing it wrote stays) is stored with one more
statement, `store_idempotent_response`, which claims the key again: if a concurrent request with
the key got it meanwhile, its answer is the one that stands and the one returned.

Usage in a router::

    async def create_transfer(body: TransferIn, db: DirectDep, keyed: KeyedCallDep):
        return await keyed.run(lambda claim: service.transfer(db, body, claim), status_code=201)

where `work` returns the result (a model), or the StoredResponse `claimed` gave back.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, Header, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import Response
from sqlalchemy import Integer, Text, bindparam, text
from sqlalchemy.dialects.postgresql import JSONB

from micropay_common.db import Direct, DirectDep, Statement
from micropay_common.errors import PROBLEM_JSON, ProblemError, problem_response
from micropay_common.idempotency.errors import IdempotencyConflict, IdempotencyKeyInUse
from micropay_common.idempotency.fingerprint import fingerprint_of
from micropay_common.idempotency.header import (
    IDEMPOTENCY_KEY_HEADER,
    answer_headers,
    required_key,
)
from micropay_common.idempotency.repository import Claim
from micropay_common.idempotency.stored_responses import (
    DEFAULT_LOCK_TIMEOUT_SECONDS,
    StoredResponse,
    json_ready,
    render,
    replay_response,
)
from micropay_common.security import CurrentUser
from micropay_common.state import AppState

_LOCK_NOT_AVAILABLE = "55P03"

# Unqualified: the service's search_path is its own schema, where its migration made it.
_STORE_RESPONSE = (
    text(
        "SELECT store_idempotent_response(:owner, :key, :method, :path, :fingerprint, "
        ":ttl_hours, :lock_timeout, :status, :body, :media_type) AS outcome"
    )
    .bindparams(
        bindparam("ttl_hours", type_=Integer),
        bindparam("status", type_=Integer),
        bindparam("body", type_=JSONB),
        bindparam("media_type", type_=Text),
    )
    .columns(outcome=JSONB)
)
_STORE_RESPONSE_SQL = Statement.of(_STORE_RESPONSE)


@dataclass(frozen=True)
class Answer:
    """A fresh result with a status of its own, for an endpoint whose answers differ in status
    (a 201 for a transfer made, a 202 for one accepted to complete later)."""

    status: int
    result: Any


def claim_parameters(claim: Claim) -> dict[str, Any]:
    """The claim as the SQL functions take it (`:key`, `:method`, … `:lock_timeout`)."""
    return {
        "key": claim.key,
        "method": claim.method,
        "path": claim.path,
        "fingerprint": claim.fingerprint,
        "ttl_hours": claim.ttl_hours,
        "lock_timeout": claim.lock_timeout_setting(),
    }


def claimed(outcome: Mapping[str, Any]) -> StoredResponse | None:
    """What `claim_idempotency_key` found when it did not claim the key: the answer to replay,
    or the refusal it means (raised); None when the outcome is not one of these."""
    replay = outcome.get("replay")
    if replay is not None:
        return StoredResponse(
            status=int(replay["status"]), body=replay["body"], media_type=replay["media_type"]
        )
    refused = outcome.get("refused")
    if refused == "other_request":
        raise IdempotencyConflict(
            f"This Idempotency-Key was first used for {outcome['method']} {outcome['path']}; "
            "keys are for retrying the same request. Use a new key for a different request."
        )
    if refused == "other_body":
        raise IdempotencyConflict(
            "This Idempotency-Key was first used with a different request body or query; "
            "keys are for retrying the same request. Use a new key for a different request."
        )
    if refused == "in_progress":
        raise IdempotencyKeyInUse("This Idempotency-Key has no stored response yet.")
    if refused == "changing_hands":
        raise IdempotencyKeyInUse("This Idempotency-Key is changing hands; retry shortly.")
    return None


@contextmanager
def key_in_use() -> Iterator[None]:
    """Turn the claim's lock timeout (another request holds the key) into 409 key in use."""
    try:
        yield
    except asyncpg.PostgresError as error:
        if error.sqlstate == _LOCK_NOT_AVAILABLE:
            raise IdempotencyKeyInUse(
                "Another request with this Idempotency-Key is still being processed; "
                "retry shortly.",
            ) from error
        raise


@dataclass(frozen=True)
class KeyedCall:
    """A keyed request whose SQL function claims the key and stores the answer itself."""

    connection: Direct
    claim: Claim

    async def run(
        self, work: Callable[[Claim], Awaitable[Any]], *, status_code: int = 200
    ) -> Response:
        """Answer with `work`'s result, the stored answer it replays, or its stored refusal."""
        headers = answer_headers(self.claim.key, replayed=False)
        try:
            with key_in_use():
                result = await work(self.claim)
        except (IdempotencyConflict, IdempotencyKeyInUse):
            raise
        except ProblemError as error:
            if error.status >= 500:
                raise
            return await self._refuse(error, headers)
        if isinstance(result, StoredResponse):
            return replay_response(self.claim.key, result)
        if isinstance(result, Answer):
            return render(result.status, json_ready(result.result), headers)
        return render(status_code, json_ready(result), headers)

    async def _refuse(self, error: ProblemError, headers: dict[str, str]) -> Response:
        problem = jsonable_encoder(error.to_body(self.claim.path))
        with key_in_use():
            stored_outcome = await self.connection.fetchval(
                _STORE_RESPONSE_SQL,
                owner=self.claim.owner,
                **claim_parameters(self.claim),
                status=error.status,
                body=json.dumps(problem),
                media_type=PROBLEM_JSON,
            )
        outcome = json.loads(stored_outcome)
        stored = claimed(outcome)
        if stored is not None:
            return replay_response(self.claim.key, stored)
        return problem_response(error.status, problem, {**error.headers, **headers})


async def keyed_call(
    request: Request,
    connection: DirectDep,
    user: CurrentUser,
    # A default rather than Annotated: postponed annotations cannot see the description.
    idempotency_key: str | None = Header(
        default=None,
        alias=IDEMPOTENCY_KEY_HEADER,
        description="Unique key (1 to 255 printable ASCII characters, e.g. a UUID) that makes "
        "retries of this request safe: the same key with the same body returns the stored "
        "response. Required.",
    ),
) -> KeyedCall:
    """Dependency: the request's claim (Idempotency-Key required), on the app's `Direct`."""
    # The header parameter documents the API; the raw headers are read to refuse repeats.
    del idempotency_key
    key = required_key(request)
    claim = Claim(
        owner=user.id,
        key=key,
        method=request.method,
        path=request.url.path,
        fingerprint=await fingerprint_of(request),
        ttl_hours=AppState.of(request.app).settings.idempotency_ttl_hours,
        lock_timeout_seconds=DEFAULT_LOCK_TIMEOUT_SECONDS,
    )
    return KeyedCall(connection=connection, claim=claim)


KeyedCallDep = Annotated[KeyedCall, Depends(keyed_call)]
