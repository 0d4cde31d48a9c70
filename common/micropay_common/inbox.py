"""Consumer side of events: `POST /internal/events`, applying each event at most once.

The event id goes into the inbox in the same transaction as the handler's effect, so a
redelivery (the relay retries until it sees a 2xx) finds the id and changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from micropay_common.db import SessionDep
from micropay_common.events import EventEnvelope, events_consumed_by
from micropay_common.security import ServiceCaller
from micropay_common.tables import inbox

logger = logging.getLogger("micropay.inbox")

Handler = Callable[[AsyncSession, EventEnvelope], Awaitable[None]]


class EventReceipt(BaseModel):
    """What the consumer did with an event; any 2xx tells the relay to stop retrying."""

    status: Literal["applied", "duplicate", "ignored"]


def events_router(handlers: Mapping[str, Handler], *, consumer: str) -> APIRouter:
    """`POST /internal/events` for `consumer`, applying each event type with its handler."""
    routed = events_consumed_by(consumer)
    stray = sorted(set(handlers) - routed)
    if stray:
        raise ValueError(f"{consumer!r} is not a consumer of {', '.join(stray)} (see EVENT_ROUTES)")
    handlers = dict(handlers)
    router = APIRouter(tags=["internal"])

    @router.post(
        "/internal/events",
        summary="Receive an event from another MicroPay service",
        response_model=EventReceipt,
        responses={
            401: {"description": "No valid service token"},
            403: {"description": "The caller is not in the `services` group"},
            422: {"description": "The body is not an event envelope"},
        },
    )
    async def receive_event(
        caller: ServiceCaller, envelope: EventEnvelope, session: SessionDep
    ) -> EventReceipt:
        """Record the event id and apply the event in one transaction; repeats are no-ops.

        A handler error rolls both back and answers non-2xx, so the producer retries.
        """
        # A concurrent delivery of the same id waits here on the primary key until the first
        # commits (then sees a duplicate) or rolls back (then applies it itself).
        recorded = await session.scalar(
            insert(inbox)
            .values(event_id=envelope.id, event_type=envelope.type, producer=envelope.producer)
            .on_conflict_do_nothing(index_elements=["event_id"])
            .returning(inbox.c.event_id)
        )
        log_extra = {
            "event_id": str(envelope.id),
            "event_type": envelope.type,
            "caller": caller.username,
        }
        if recorded is None:
            logger.info("event %s already received; skipped", envelope.id, extra=log_extra)
            return EventReceipt(status="duplicate")
        handler = handlers.get(envelope.type)
        if handler is None:
            logger.info(
                "%s has no handler for %s; recorded and ignored",
                consumer,
                envelope.type,
                extra=log_extra,
            )
            return EventReceipt(status="ignored")
        await handler(session, envelope)
        logger.info("event %s (%s) applied", envelope.id, envelope.type, extra=log_extra)
        return EventReceipt(status="applied")

    return router
