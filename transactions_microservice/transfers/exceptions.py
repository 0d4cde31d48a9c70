"""Problems of transfers."""

from __future__ import annotations

from micropay_common.errors import BadRequest, UnprocessableEntity


class RecipientUnavailable(UnprocessableEntity):
    """422: the email names no one who can receive a transfer.

    One answer, word for word, for an email nobody registered, one the ledger has not heard of
    and any recipient not allowed to receive, so a refusal never tells which emails have an
    account.
    """

    type = "recipient_unavailable"
    title = "Recipient unavailable"


RECIPIENT_UNAVAILABLE = "This transfer cannot be made to that recipient."
"""The detail of every RecipientUnavailable: it names neither the email nor the reason."""


class TransferToSelf(BadRequest):
    """400: the recipient is the sender."""

    type = "transfer_to_self"
    title = "Transfer to yourself"
