"""Problems of the risk limits."""

from __future__ import annotations

from micropay_common.errors import UnprocessableEntity


class LimitExceeded(UnprocessableEntity):
    """422: the request would go beyond one of the caller's limits.

    The problem names the limit (`limit_kind`, `limit`, `currency`), what is left of it
    (`remaining`) and, for a daily limit, when it resets (`resets_at`).
    """

    type = "limit_exceeded"
    title = "Limit exceeded"
