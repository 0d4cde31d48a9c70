"""Events as producers send them, and the events a consumer app applies."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, overload

from fastapi import FastAPI

from micropay_common.events import EVENTS_PATH, Event, EventEnvelope, producer_of
from micropay_common.inbox import HANDLED_EVENTS_KEY


@overload
def event_envelope(event: Event, *, event_id: uuid.UUID | None = None) -> dict[str, Any]: ...


@overload
def event_envelope(
    event: str, data: Mapping[str, Any], *, event_id: uuid.UUID | None = None
) -> dict[str, Any]: ...


def event_envelope(
    event: Event | str,
    data: Mapping[str, Any] | None = None,
    *,
    event_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    """An event as its producer's outbox relay posts it to `/internal/events`.

    Give a typed event, or an event type and its data as they should appear on the wire (valid
    or not, to see how a consumer treats a producer's mistake).
    """
    if isinstance(event, Event):
        return EventEnvelope.of(event, event_id=event_id).model_dump(mode="json")
    envelope = EventEnvelope(
        id=event_id or uuid.uuid4(),
        type=event,
        occurred_at=datetime.now(UTC),
        producer=producer_of(event),
        data=dict(data or {}),
    )
    return envelope.model_dump(mode="json")


def handled_events(app: FastAPI) -> frozenset[str] | None:
    """The event types an app applies at `/internal/events` (None when it has no inbox)."""
    operation = app.openapi()["paths"].get(EVENTS_PATH, {}).get("post")
    return None if operation is None else frozenset(operation[HANDLED_EVENTS_KEY])
