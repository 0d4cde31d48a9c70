"""Consumer side of events: `POST /internal/events`, applying each event at most once.

The event id goes into the inbox in the same transaction as the handler's effect, so a
redelivery (the relay retries until it sees a 2xx) finds the id and changes nothing. The
handler of an event type receives its `data` as that type's model (`micropay_common.events`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, Generic, Literal, TypeVar
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from sqlalchemy import bindparam
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from micropay_common.db import SessionDep
from micropay_common.events import (
    EVENTS_PATH,
    Event,
    EventEnvelope,
    EventType,
    UnknownEventType,
    event_model,
    events_consumed_by,
    producer_of,
)
from micropay_common.security import (
    SERVICE_CALLER_RESPONSES,
    AuthenticatedUser,
    CurrentUser,
    refuse_caller,
    require_callers,
)
from micropay_common.services import ServiceName
from micropay_common.tables import inbox

logger = logging.getLogger("micropay.inbox")

E = TypeVar("E", bound=Event)


@dataclass(frozen=True)
class EventMeta:
    """What the envelope says about an event besides its data."""

    id: UUID
    type: EventType
    occurred_at: datetime
    producer: str


Handler = Callable[[AsyncSession, E, EventMeta], Awaitable[None]]
"""Applies one event of type E inside the inbox transaction; raising rolls both back."""


@dataclass(frozen=True)
class EventHandler(Generic[E]):
    """The handler of one event type, with the model its data is validated against."""

    model: type[E]
    handle: Handler[E]


def on(model: type[E], handle: Handler[E]) -> EventHandler[E]:
    """Handle the events of `model`'s type with `handle`, which takes that model."""
    return EventHandler(model, handle)


class EventReceipt(BaseModel):
    """What the consumer did with an event; any 2xx tells the relay to stop retrying."""

    status: Literal["applied", "duplicate", "ignored"]


class EventInbox:
    """The handlers of one consumer, by event type, and the endpoint that applies them."""

    def __init__(self, consumer: ServiceName, handlers: Iterable[EventHandler[Any]]) -> None:
        table: dict[str, EventHandler[Any]] = {}
        for handler in handlers:
            event_type = handler.model.event_type
            if handler.model is not event_model(event_type):
                # A consumer's own (say, stricter) model would refuse what its producer sends.
                raise ValueError(f"handle {event_type} with {event_model(event_type).__name__}")
            if event_type in table:
                raise ValueError(f"two handlers for {event_type}")
            table[event_type] = handler
        stray = sorted(set(table) - events_consumed_by(consumer))
        if stray:
            raise ValueError(
                f"'{consumer}' is not a consumer of {', '.join(stray)} (see micropay_common.events)"
            )
        self.consumer = consumer
        self.handlers: Mapping[str, EventHandler[Any]] = MappingProxyType(table)
        """Handler by event type."""

    async def receive_event(
        self,
        envelope: EventEnvelope,
        session: SessionDep,
        caller: CurrentUser,
        request: Request,
    ) -> EventReceipt:
        """Record the event id and apply the event in one transaction; repeats are no-ops.

        Only the account of the event type's producer may deliver it, naming itself as the
        producer; anyone else is a 403 before anything is recorded. Data that does not match
        its type's model is a 422 like any invalid body, and nothing is recorded, so the
        producer keeps the event; a handler error rolls back both and answers non-2xx, so the
        producer retries.
        """
        authorize_delivery(request, caller, envelope)
        return await self.apply(session, envelope, caller=caller.username)

    async def apply(
        self, session: AsyncSession, envelope: EventEnvelope, *, caller: str | None = None
    ) -> EventReceipt:
        """Record the event id and apply the event in the session's transaction (a delivery
        already authorized); a repeat changes nothing."""
        # A concurrent delivery of the same id waits here on the primary key until the first
        # commits (then sees a duplicate) or rolls back (then applies it itself).
        recorded = await session.scalar(
            _RECORD,
            {"id": envelope.id, "type": envelope.type, "sender": envelope.producer},
        )
        log_extra = {
            "event_id": str(envelope.id),
            "event_type": envelope.type,
            "caller": caller,
        }
        if recorded is None:
            logger.info("event %s already received; skipped", envelope.id, extra=log_extra)
            return EventReceipt(status="duplicate")
        handler = self.handlers.get(envelope.type)
        if handler is None:
            logger.info(
                "%s has no handler for %s; recorded and ignored",
                self.consumer,
                envelope.type,
                extra=log_extra,
            )
            return EventReceipt(status="ignored")
        try:
            event = handler.model.model_validate(envelope.data)
        except ValidationError as exc:
            # The same problem as for an invalid envelope, located in the body's `data`.
            raise RequestValidationError(
                [{**error, "loc": ("body", "data", *error["loc"])} for error in exc.errors()]
            ) from exc
        meta = EventMeta(
            envelope.id, handler.model.event_type, envelope.occurred_at, envelope.producer
        )
        await handler.handle(session, event, meta)
        logger.info("event %s (%s) applied", envelope.id, envelope.type, extra=log_extra)
        return EventReceipt(status="applied")


def authorize_delivery(
    request: Request, caller: AuthenticatedUser, envelope: EventEnvelope
) -> None:
    """Raise CallerNotAllowed unless `caller` is the account of the event type's producer.

    A type this consumer does not know is refused too: no one can be shown to be its producer,
    and recording its id would let any service account occupy ids of events yet to come. The
    producer's outbox keeps refused events and retries them, so one sent by a producer that was
    upgraded first is received once this consumer knows its type.
    """
    context = {"event_id": str(envelope.id), "event_type": envelope.type}
    try:
        producer = producer_of(envelope.type)
    except UnknownEventType:
        raise refuse_caller(
            request,
            caller,
            "unknown_event_type",
            f"'{envelope.type}' is not an event type this service knows a producer of.",
            **context,
        ) from None
    if caller.service != producer:
        raise refuse_caller(
            request,
            caller,
            "not_the_producer",
            f"Only the {producer} service sends {envelope.type} events.",
            **context,
        )
    if envelope.producer != producer:
        raise refuse_caller(
            request,
            caller,
            "producer_mismatch",
            f"The envelope names '{envelope.producer}' as producer; {envelope.type} is"
            f" {producer}'s.",
            **context,
        )


_RECORD = (
    insert(inbox)
    .values(
        event_id=bindparam("id"),
        event_type=bindparam("type"),
        producer=bindparam("sender"),
    )
    .on_conflict_do_nothing(index_elements=["event_id"])
    .returning(inbox.c.event_id)
)
"""Built once: every event received runs it."""

HANDLED_EVENTS_KEY = "x-micropay-events"
"""OpenAPI extension of `POST /internal/events`: the event types the consumer applies."""


def events_router(handlers: Iterable[EventHandler[Any]], *, consumer: ServiceName) -> APIRouter:
    """`POST /internal/events` for `consumer`, applying each event type with its handler."""
    receiver = EventInbox(consumer, handlers)
    handled = sorted(receiver.handlers)
    # Only the producers of what this consumer receives deliver events here; which producer
    # may send which event is checked per event, before the inbox is written.
    producers = sorted({producer_of(event_type) for event_type in events_consumed_by(consumer)})
    router = APIRouter(tags=["internal"], dependencies=[Depends(require_callers(*producers))])
    router.add_api_route(
        EVENTS_PATH,
        receiver.receive_event,
        methods=["POST"],
        summary="Receive an event from another MicroPay service",
        description=(
            "Records the event id and applies the event in one transaction; a repeat is answered"
            f" `duplicate`. Applies {', '.join(f'`{t}`' for t in handled) or 'no event'}; other"
            " types are recorded and `ignored`."
        ),
        response_model=EventReceipt,
        responses={
            **SERVICE_CALLER_RESPONSES,
            403: {
                "description": "`caller_not_allowed`: the caller is not the account of the"
                " event type's producer, or the envelope names another producer"
            },
            422: {"description": "The body is not an event envelope, or its data not the event's"},
        },
        openapi_extra={HANDLED_EVENTS_KEY: handled},
    )
    return router
