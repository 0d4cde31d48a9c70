"""Events as producers send them."""

from __future__ import annotations

import uuid
from typing import Any

from micropay_common.events import EventEnvelope


def event_envelope(
    event_type: str, data: dict[str, Any], *, event_id: uuid.UUID | None = None
) -> dict[str, Any]:
    """An event as its producer's outbox relay posts it to `/internal/events`."""
    return EventEnvelope.new(event_type, data, event_id=event_id).model_dump(mode="json")
