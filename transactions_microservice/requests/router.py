"""HTTP endpoints of money requests."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from micropay_common.db import SessionDep
from micropay_common.idempotency import RequiredIdempotencyDep
from micropay_common.pagination import LIST_RESPONSES, Limit
from micropay_common.security import CurrentUser
from transactions_microservice.dependencies import SettingsDep
from transactions_microservice.models import MoneyRequestStatus
from transactions_microservice.requests import service
from transactions_microservice.requests.schemas import (
    MoneyRequestCreate,
    MoneyRequestPage,
    MoneyRequestRead,
    MoneyRequestRole,
)

router = APIRouter(tags=["transactions"])

_UNAUTHORIZED: dict[int | str, dict[str, Any]] = {401: {"description": "No valid access token"}}
_NOT_OPEN: dict[int | str, dict[str, Any]] = {
    404: {"description": "`money_request_not_found`: no such request on the caller's side"},
    409: {
        "description": "`money_request_not_open`: already paid, declined, cancelled or expired "
        "(with `request_status`)"
    },
}


@router.post(
    "/transactions/requests",
    status_code=201,
    response_model=MoneyRequestRead,
    summary="Ask someone for money by email",
    responses={
        **_UNAUTHORIZED,
        400: {"description": "`money_request_to_self`, or a missing/invalid Idempotency-Key"},
        409: {"description": "An Idempotency-Key conflict"},
        422: {
            "description": "`limit_exceeded`: above the per-transaction limit of a transfer; "
            "`validation_error`: amount not a positive integer, an unsupported currency"
        },
    },
)
async def create_request(
    body: MoneyRequestCreate,
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
    idem: RequiredIdempotencyDep,
) -> Response:
    """Open a request; the answer is the same whether or not `from_email` has an account (a
    request to an email without one waits for its sign-up). `Idempotency-Key` is required."""
    return await idem.run(
        lambda: service.create_request(session, user.id, user.email, body, settings=settings),
        status_code=201,
    )


@router.get(
    "/transactions/requests",
    response_model=MoneyRequestPage,
    summary="The caller's money requests, newest first",
    responses={**_UNAUTHORIZED, **LIST_RESPONSES},
)
async def list_requests(
    session: SessionDep,
    user: CurrentUser,
    role: MoneyRequestRole = Query(
        MoneyRequestRole.REQUESTER,
        description="`requester`: the requests the caller made; `payer`: those asking the "
        "caller to pay.",
    ),
    status: MoneyRequestStatus | None = Query(None, description="Only requests in this status."),
    limit: Limit = 10,
    starting_after: uuid.UUID | None = Query(
        None, description="Id of the last request of the previous page."
    ),
) -> MoneyRequestPage:
    """Cursor-paginated requests on one side."""
    found = await service.list_requests(
        session, user.id, role=role, status=status, limit=limit, starting_after=starting_after
    )
    return MoneyRequestPage.of(found, limit)


@router.post(
    "/transactions/requests/{request_id}/pay",
    status_code=201,
    response_model=MoneyRequestRead,
    summary="Pay a money request addressed to the caller",
    responses={
        **_UNAUTHORIZED,
        **_NOT_OPEN,
        400: {"description": "A missing/invalid Idempotency-Key"},
        409: {
            "description": "`money_request_not_open` (paid already, declined, cancelled, "
            "expired; with `request_status`), and as a transfer: `insufficient_funds`, "
            "`wallet_has_debt`, or an Idempotency-Key conflict"
        },
        422: {
            "description": "As a transfer: `limit_exceeded` (the daily limit), "
            "`recipient_unavailable`"
        },
    },
)
async def pay_request(
    request_id: uuid.UUID,
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
    idem: RequiredIdempotencyDep,
) -> Response:
    """Move the amount to the requester as a transfer and mark the request `paid`, in one
    transaction; paying it again is 409. `Idempotency-Key` is required."""
    return await idem.run(
        lambda: service.pay(session, user.id, user.email, request_id, settings=settings),
        status_code=201,
    )


@router.post(
    "/transactions/requests/{request_id}/decline",
    response_model=MoneyRequestRead,
    summary="Decline a money request addressed to the caller",
    responses={**_UNAUTHORIZED, **_NOT_OPEN},
)
async def decline_request(
    request_id: uuid.UUID, session: SessionDep, user: CurrentUser
) -> MoneyRequestRead:
    """The payer refuses an open request; both sides are told."""
    return await service.decline(session, user.id, request_id)


@router.post(
    "/transactions/requests/{request_id}/cancel",
    response_model=MoneyRequestRead,
    summary="Cancel a money request the caller made",
    responses={**_UNAUTHORIZED, **_NOT_OPEN},
)
async def cancel_request(
    request_id: uuid.UUID, session: SessionDep, user: CurrentUser
) -> MoneyRequestRead:
    """The requester withdraws an open request; both sides are told."""
    return await service.cancel(session, user.id, request_id)
