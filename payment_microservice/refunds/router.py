"""Refunds endpoints: refund a payment to its card, list a payment's refunds."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from micropay_common.db import SessionDep
from micropay_common.idempotency import IDEMPOTENCY_KEY_HEADER, read_keyed_request
from micropay_common.security import CurrentUser
from payment_microservice.dependencies import RefundDriverDep
from payment_microservice.models import RefundStatus
from payment_microservice.refunds import service
from payment_microservice.refunds.schemas import RefundCreate, RefundList, RefundRead

router = APIRouter(prefix="/payments", tags=["payments"])

KEY_DESCRIPTION = (
    "Unique key (1 to 255 printable ASCII characters, e.g. a UUID). A retry with the same key "
    "and body refunds once and answers with the same refund. Required."
)


@router.post(
    "/{payment_id}/refunds",
    status_code=201,
    response_model=RefundRead,
    summary="Refund a payment to its card",
    responses={
        400: {"description": "Idempotency-Key missing or malformed"},
        404: {"description": "No such payment visible to the caller"},
        409: {
            "description": (
                "`insufficient_funds` (the wallet cannot cover it), `wallet_has_debt` (the "
                "user owes money in this currency after a lost dispute; with `owed`), "
                "`refund_exceeds_payment`, "
                "`payment_not_refundable`, `refund_failed` (Stripe refused), or an "
                "Idempotency-Key conflict"
            ),
        },
        503: {"description": "Stripe or the wallet did not answer; retry"},
    },
)
async def create_refund(
    payment_id: uuid.UUID,
    request: Request,
    body: RefundCreate,
    user: CurrentUser,
    driver: RefundDriverDep,
    idempotency_key: Annotated[
        str | None, Header(alias=IDEMPOTENCY_KEY_HEADER, description=KEY_DESCRIPTION)
    ] = None,
) -> JSONResponse:
    """Debit the wallet (hold, then capture) and refund the card; partial refunds allowed."""
    # The header parameter documents the API; the raw headers are read to refuse repeats.
    del idempotency_key
    keyed = await read_keyed_request(request)
    submission = await driver.submit(user=user, payment_id=payment_id, keyed=keyed, body=body)
    headers = keyed.headers(replayed=submission.replayed)
    refund = submission.resource
    if refund.status == RefundStatus.FAILED:
        raise service.failure_problem(refund, headers)
    return JSONResponse(jsonable_encoder(service.to_read(refund)), status_code=201, headers=headers)


@router.get(
    "/{payment_id}/refunds",
    response_model=RefundList,
    summary="List a payment's refunds",
    responses={404: {"description": "No such payment visible to the caller"}},
)
async def list_refunds(payment_id: uuid.UUID, session: SessionDep, user: CurrentUser) -> Any:
    """The refunds of one of the caller's payments, newest first."""
    return await service.list_refunds(session, user, payment_id)
