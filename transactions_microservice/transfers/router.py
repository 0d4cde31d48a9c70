"""HTTP endpoint of transfers."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from micropay_common.db import DirectDep
from micropay_common.idempotency import KeyedCallDep
from micropay_common.security import CurrentUser
from transactions_microservice.dependencies import SessionmakerDep, SettingsDep
from transactions_microservice.invitations.schemas import InvitationRead
from transactions_microservice.transfers import service
from transactions_microservice.transfers.schemas import TransferCreate, TransferRead

router = APIRouter(tags=["transactions"])


@router.post(
    "/transactions/transfers",
    status_code=201,
    response_model=TransferRead,
    summary="Send money to another user by email",
    responses={
        202: {
            "model": InvitationRead,
            "description": "With `invite: true` and a `to_email` that has no account: the "
            "amount is held on the sender's wallet and the address is invited; the transfer "
            "completes (`transfer.completed`) when it signs up, or the hold is released when it "
            "expires or the sender cancels it (`POST /transactions/transfers/{id}/cancel`)",
        },
        400: {"description": "Transfer to yourself, or a missing/invalid Idempotency-Key"},
        401: {"description": "No valid access token"},
        409: {
            "description": "`wallet_has_debt` (the sender owes in this currency; with `owed`), "
            "`insufficient_funds` (weighed before the recipient; card money still settling is "
            "not available, see `pending`), or an Idempotency-Key conflict"
        },
        422: {
            "description": "`limit_exceeded`: above the per-transaction or the daily limit "
            "(with `limit_kind`, `limit`, `remaining`, `currency`, `resets_at`; weighed before "
            "the recipient); `recipient_unavailable`: `to_email` names no one who can receive "
            "(one answer whether or not the email has an account); or `validation_error`: "
            "amount not a positive integer, an unsupported currency"
        },
    },
)
async def create_transfer(
    body: TransferCreate,
    db: DirectDep,
    sessions: SessionmakerDep,
    settings: SettingsDep,
    user: CurrentUser,
    keyed: KeyedCallDep,
) -> Response:
    """Move money from the caller's wallet; the `Idempotency-Key` header is required. With
    `invite: true`, an email without an account gets a pending transfer (202) instead of
    `recipient_unavailable`."""
    if body.invite:
        return await keyed.run(
            lambda claim: service.send_or_invite(
                sessions, user.id, user.email, body, settings=settings, claim=claim
            ),
            status_code=201,
        )
    return await keyed.run(
        lambda claim: service.create_transfer(
            db, user.id, user.email, body, settings=settings, claim=claim
        ),
        status_code=201,
    )
