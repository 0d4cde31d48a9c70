"""Problems of money requests."""

from __future__ import annotations

from micropay_common.errors import BadRequest, Conflict, NotFound


class MoneyRequestNotFound(NotFound):
    """404: no such request among the caller's (as payer or requester, as the action needs)."""

    type = "money_request_not_found"
    title = "Money request not found"


class MoneyRequestNotOpen(Conflict):
    """409: the request is paid, declined, cancelled or expired already (with `request_status`)."""

    type = "money_request_not_open"
    title = "Money request not open"


class MoneyRequestToSelf(BadRequest):
    """400: the payer's email is the requester's own."""

    type = "money_request_to_self"
    title = "Money request to yourself"
