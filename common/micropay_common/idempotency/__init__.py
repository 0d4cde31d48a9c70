"""Idempotency-Key handling with Stripe's semantics: two mechanisms on one set of parts.

Both read the header the same way (`header`: 1 to 255 printable ASCII characters, one value),
tell requests apart by the same fingerprint (`fingerprint`: method, path, query, canonical
body), keep keys per user, echo the key and mark replays with `Idempotent-Replayed: true`, and
refuse with the same problems (`errors`: 400 `idempotency_key_required` and
`invalid_idempotency_key`, 409 `idempotency_conflict` and `idempotency_key_in_use` with
`Retry-After`). They differ in where the answer comes from:

- `stored_responses` (`RequiredIdempotencyDep`, `idem.run`): for effects wholly in our own
  database. The key row and the response are written in the request's transaction, with the
  effect; a replay returns the stored status and body (a 4xx included), and a concurrent
  duplicate waits for the first to finish. Expired rows are deleted by the `purge` job.
- `keyed_resources` (`read_keyed_request`, `keyed_resources.submit`): for effects at an outside
  provider, which cannot commit with us. The resource's own row is the record, committed with a
  lease before the provider is called; answers are read from the row as it is then, and an
  unsettled one is resumed by a retry or a reconciler holding its lease (`leases`).

- `in_database` (`KeyedCallDep`, `keyed.run`): stored responses for a hot path done by one SQL
  function, which claims the key and stores the answer itself (one round trip).

Use stored responses when everything the endpoint changes commits in the request's transaction;
use a keyed resource when any part of the effect happens where our rollback cannot reach.
"""

from micropay_common.idempotency.errors import (
    IdempotencyConflict,
    IdempotencyKeyInUse,
    IdempotencyKeyRequired,
    InvalidIdempotencyKey,
)
from micropay_common.idempotency.fingerprint import (
    canonical_body,
    fingerprint_of,
    request_fingerprint,
)
from micropay_common.idempotency.header import IDEMPOTENCY_KEY_HEADER, REPLAYED_HEADER
from micropay_common.idempotency.in_database import (
    Answer,
    KeyedCall,
    KeyedCallDep,
    claim_parameters,
    claimed,
)
from micropay_common.idempotency.keyed_resources import (
    KeyedRequest,
    Submission,
    read_keyed_request,
)
from micropay_common.idempotency.purge import (
    PURGE_INTERVAL_SECONDS,
    idempotency_purge_job,
    purge_expired_idempotency_keys,
)
from micropay_common.idempotency.stored_responses import (
    DEFAULT_LOCK_TIMEOUT_SECONDS,
    IdempotencyDep,
    IdempotentRequest,
    RequiredIdempotencyDep,
    StoredResponse,
    idempotency,
)

__all__ = [
    "DEFAULT_LOCK_TIMEOUT_SECONDS",
    "IDEMPOTENCY_KEY_HEADER",
    "PURGE_INTERVAL_SECONDS",
    "REPLAYED_HEADER",
    "Answer",
    "IdempotencyConflict",
    "IdempotencyDep",
    "IdempotencyKeyInUse",
    "IdempotencyKeyRequired",
    "IdempotentRequest",
    "InvalidIdempotencyKey",
    "KeyedCall",
    "KeyedCallDep",
    "KeyedRequest",
    "RequiredIdempotencyDep",
    "StoredResponse",
    "Submission",
    "canonical_body",
    "claim_parameters",
    "claimed",
    "fingerprint_of",
    "idempotency",
    "idempotency_purge_job",
    "purge_expired_idempotency_keys",
    "read_keyed_request",
    "request_fingerprint",
]
