"""Problems of the notifications domain."""

from __future__ import annotations

from micropay_common.errors import UnprocessableEntity


class MalformedEvent(UnprocessableEntity):
    """An event whose data does not match its type's contract (micropay_common.events)."""

    type = "malformed_event"
    title = "Malformed event"
