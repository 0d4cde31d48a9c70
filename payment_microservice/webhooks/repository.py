"""SQL of the stripe_events and paypal_events tables (the webhook inboxes)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from payment_microservice.models import PayPalEvent, StripeEvent, StripeEventOutcome


async def record(session: AsyncSession, event: dict[str, Any]) -> bool:
    """Record an event id; False when it was recorded before (a redelivery).

    A concurrent delivery of the same event waits on the primary key until this transaction
    ends, then finds it.
    """
    inserted = await session.scalar(
        insert(StripeEvent)
        .values(
            id=event["id"], type=event["type"], outcome=StripeEventOutcome.APPLIED, payload=event
        )
        .on_conflict_do_nothing(index_elements=[StripeEvent.id])
        .returning(StripeEvent.id)
    )
    return inserted is not None


async def set_outcome(session: AsyncSession, event_id: str, outcome: StripeEventOutcome) -> None:
    """Note what applying the event did."""
    await session.execute(
        update(StripeEvent).where(StripeEvent.id == event_id).values(outcome=outcome)
    )


async def record_paypal(session: AsyncSession, event: dict[str, Any]) -> bool:
    """Record a PayPal event id; False when it was recorded before (a redelivery)."""
    inserted = await session.scalar(
        insert(PayPalEvent)
        .values(
            id=event["id"],
            type=event["event_type"],
            outcome=StripeEventOutcome.APPLIED,
            payload=event,
        )
        .on_conflict_do_nothing(index_elements=[PayPalEvent.id])
        .returning(PayPalEvent.id)
    )
    return inserted is not None


async def set_paypal_outcome(
    session: AsyncSession, event_id: str, outcome: StripeEventOutcome
) -> None:
    """Note what applying the PayPal event did."""
    await session.execute(
        update(PayPalEvent).where(PayPalEvent.id == event_id).values(outcome=outcome)
    )
