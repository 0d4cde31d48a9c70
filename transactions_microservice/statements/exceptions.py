"""Problems of statements."""

from __future__ import annotations

from micropay_common.errors import UnprocessableEntity


class InvalidPeriod(UnprocessableEntity):
    """422: the period is empty, reversed or longer than a statement may cover."""

    type = "invalid_period"
    title = "Invalid statement period"
