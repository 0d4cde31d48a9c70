"""HTTP endpoint of invitations: the sender cancels a pending transfer."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from micropay_common.db import SessionDep
from micropay_common.security import CurrentUser
from transactions_microservice.invitations import service
from transactions_microservice.invitations.schemas import InvitationRead

router = APIRouter(tags=["transactions"])


@router.post(
    "/transactions/transfers/{transfer_id}/cancel",
    response_model=InvitationRead,
    summary="Cancel a pending transfer (one waiting for its recipient to sign up)",
    responses={
        401: {"description": "No valid access token"},
        404: {"description": "`transfer_not_found`: no pending transfer of the caller's"},
        409: {
            "description": "`transfer_not_pending`: it completed, was cancelled or expired "
            "(with `transfer_status`)"
        },
    },
)
async def cancel_transfer(
    transfer_id: uuid.UUID, session: SessionDep, user: CurrentUser
) -> InvitationRead:
    """Release the held amount to the sender's wallet; the sender is told."""
    return await service.cancel(session, user.id, transfer_id)
