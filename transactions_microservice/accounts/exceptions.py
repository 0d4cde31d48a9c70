"""Problems of wallets."""

from __future__ import annotations

from micropay_common.errors import UnprocessableEntity


class InstantInFuture(UnprocessableEntity):
    """422: a balance or a statement asked for an instant that has not happened yet."""

    type = "instant_in_future"
    title = "Instant in the future"
