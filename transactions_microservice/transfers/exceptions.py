"""Problems of transfers."""

from __future__ import annotations

from micropay_common.errors import BadRequest, NotFound


class RecipientNotFound(NotFound):
    """404: no registered user has the recipient email."""

    type = "recipient_not_found"
    title = "Recipient not found"


class TransferToSelf(BadRequest):
    """400: the recipient is the sender."""

    type = "transfer_to_self"
    title = "Transfer to yourself"
