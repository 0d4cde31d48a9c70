"""Problems of invitations."""

from __future__ import annotations

from micropay_common.errors import Conflict, NotFound


class InvitationNotFound(NotFound):
    """404: no pending transfer of the caller's with this id."""

    type = "transfer_not_found"
    title = "Transfer not found"


class InvitationNotPending(Conflict):
    """409: the invitation completed, was cancelled or expired already (with `transfer_status`)."""

    type = "transfer_not_pending"
    title = "Transfer not pending"
