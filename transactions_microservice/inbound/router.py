"""`POST /internal/events` for the events this service consumes."""

from __future__ import annotations

from fastapi import APIRouter

from micropay_common.inbox import events_router
from micropay_common.services import ServiceName
from transactions_microservice.inbound.service import EventHandlers


def inbound_router(handlers: EventHandlers) -> APIRouter:
    """The inbox endpoint, applying each event once with its handler."""
    return events_router(handlers.routes(), consumer=ServiceName.TRANSACTIONS)
