"""Payments endpoints: top up by card, read payments."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from micropay_common.db import SessionDep
from micropay_common.idempotency import IDEMPOTENCY_KEY_HEADER, read_keyed_request
from micropay_common.limits import TopUpAllowances
from micropay_common.pagination import LIST_RESPONSES, Limit
from micropay_common.security import SERVICE_CALLER_RESPONSES, CurrentUser, require_callers
from micropay_common.services import ServiceName
from payment_microservice.dependencies import PaymentDriverDep, SettingsDep
from payment_microservice.models import PaymentStatus
from payment_microservice.payments import service
from payment_microservice.payments.schemas import (
    PaymentCreate,
    PaymentList,
    PaymentRead,
)

router = APIRouter(prefix="/payments", tags=["payments"])

internal_router = APIRouter(
    tags=["internal"],
    # The transactions service shows the top-up allowance beside its transfer allowances.
    dependencies=[Depends(require_callers(ServiceName.TRANSACTIONS))],
    responses=SERVICE_CALLER_RESPONSES,
)

KEY_DESCRIPTION = (
    "Unique key (1 to 255 printable ASCII characters, e.g. a UUID). A retry with the same key "
    "and body never charges twice: it answers with the same payment. Required."
)


@router.post(
    "",
    status_code=201,
    response_model=PaymentRead,
    summary="Top up the wallet by card or through PayPal",
    responses={
        400: {"description": "Idempotency-Key missing or malformed"},
        402: {"description": "Card declined (`card_declined`) or payment failed"},
        409: {"description": "Idempotency-Key reused with another body, or in use"},
        422: {
            "description": "Invalid body, unsupported currency, amount out of range, "
            "`provider_not_offered` (PayPal not configured), or `limit_exceeded`: above the "
            "daily top-up limit (with `limit`, `remaining`, `currency`, `resets_at`)",
        },
        503: {"description": "Stripe or PayPal did not answer; the payment stays processing"},
    },
)
async def create_payment(
    request: Request,
    body: PaymentCreate,
    user: CurrentUser,
    driver: PaymentDriverDep,
    idempotency_key: Annotated[
        str | None, Header(alias=IDEMPOTENCY_KEY_HEADER, description=KEY_DESCRIPTION)
    ] = None,
) -> JSONResponse:
    """Create and confirm a card payment, or start a PayPal one; `succeeded` credits the
    wallet (once).

    A card's `requires_action` (3-D Secure) comes back with `next_action` and `client_secret`
    for Stripe.js; the wallet is credited when Stripe reports the payment succeeded. A PayPal
    payment (`provider: "paypal"`, `return_url`, `cancel_url`) comes back `requires_action`
    with `next_action.redirect_to_url.url`, PayPal's approval page; once the buyer is back at
    `return_url`, `POST /payments/{id}/confirm` captures it.
    """
    # The header parameter documents the API; the raw headers are read to refuse repeats.
    del idempotency_key
    keyed = await read_keyed_request(request)
    submission = await driver.submit(user_id=user.id, keyed=keyed, body=body)
    headers = keyed.headers(replayed=submission.replayed)
    payment = submission.resource
    if payment.status == PaymentStatus.FAILED:
        raise service.failure_problem(payment, headers)
    return JSONResponse(
        jsonable_encoder(service.to_read(payment)), status_code=201, headers=headers
    )


@router.get(
    "",
    response_model=PaymentList,
    summary="List payments, newest first",
    responses=LIST_RESPONSES,
)
async def list_payments(
    session: SessionDep,
    user: CurrentUser,
    limit: Limit = 10,
    starting_after: Annotated[
        uuid.UUID | None, Query(description="The last payment id of the previous page.")
    ] = None,
    user_id: Annotated[
        str | None, Query(description="Admins only: one user's payments.", max_length=128)
    ] = None,
) -> Any:
    """The caller's payments; an admin sees every user's (or one user's with `user_id`)."""
    return await service.list_payments(
        session, user, limit=limit, starting_after=starting_after, user_id=user_id
    )


@router.get(
    "/limits",
    response_model=TopUpAllowances,
    summary="The caller's top-up allowances left today",
    responses={401: {"description": "No valid access token"}},
)
async def get_limits(
    session: SessionDep, settings: SettingsDep, user: CurrentUser
) -> TopUpAllowances:
    """Per currency: the daily top-up limit, what was topped up today and what is left."""
    return await service.limits(session, settings, user.id)


@internal_router.get(
    "/internal/limits/top-ups",
    response_model=TopUpAllowances,
    summary="A user's top-up allowances left today (the transactions service's account)",
)
async def get_user_top_up_limits(
    session: SessionDep,
    settings: SettingsDep,
    user_id: Annotated[str, Query(min_length=1, max_length=128, description="The user's id.")],
) -> TopUpAllowances:
    """What `GET /payments/limits` answers that user, for `GET /transactions/limits`."""
    return await service.limits(session, settings, user_id)


@router.post(
    "/{payment_id}/confirm",
    response_model=PaymentRead,
    summary="Capture an approved PayPal payment",
    responses={
        404: {"description": "No such payment visible to the caller"},
        409: {
            "description": "`payment_not_approved`: the buyer has not approved at PayPal yet; "
            "`payment_not_confirmable`: not a PayPal payment",
        },
        503: {"description": "PayPal did not answer; confirm again"},
    },
)
async def confirm_payment(
    payment_id: uuid.UUID, user: CurrentUser, driver: PaymentDriverDep
) -> Any:
    """Capture the PayPal order the buyer approved; the payment `succeeded` credits the
    wallet (once), or `failed` with PayPal's reason in `failure_code`. Repeating it is harmless;
    PayPal's webhooks reach the same outcome when it is never called."""
    payment = await driver.confirm(await driver.visible(user, payment_id))
    return service.to_read(payment)


@router.post(
    "/{payment_id}/cancel",
    response_model=PaymentRead,
    summary="Cancel a PayPal payment the buyer did not approve",
    responses={
        404: {"description": "No such payment visible to the caller"},
        409: {"description": "`payment_not_cancelable`: settled, or not a PayPal payment"},
        503: {"description": "PayPal did not answer; cancel again"},
    },
)
async def cancel_payment(payment_id: uuid.UUID, user: CurrentUser, driver: PaymentDriverDep) -> Any:
    """For a buyer PayPal sent to `cancel_url`: the payment becomes `canceled` and is never
    captured (unless PayPal already captured it, which succeeds it). Repeating it is harmless."""
    payment = await driver.cancel(await driver.visible(user, payment_id))
    return service.to_read(payment)


@router.get(
    "/{payment_id}",
    response_model=PaymentRead,
    summary="Read a payment",
    responses={404: {"description": "No such payment visible to the caller"}},
)
async def get_payment(payment_id: uuid.UUID, session: SessionDep, user: CurrentUser) -> Any:
    """One payment of the caller (admins: any payment), with its dispute if it has one."""
    return await service.read_visible(session, user, payment_id)
