"""Rules of notification preferences: every channel on by default, security notices always on.

The event types a user has preferences for are the ones the events contract delivers to this
service (`micropay_common.events`): each of them becomes notifications (the contract test holds
the handlers to that list), so an event type added there appears here with no change. A
preference is applied when an event becomes notifications (`channels_for`), in the event's
inbox transaction: a message already written keeps its fate when the preference changes later.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from micropay_common.events import EventType, events_consumed_by
from micropay_common.locks import lock_for_transaction
from micropay_common.services import ServiceName
from notifications_microservice.models import Channel
from notifications_microservice.preferences import repository
from notifications_microservice.preferences.exceptions import (
    SecurityNoticeRequired,
    UnknownEventTypes,
)
from notifications_microservice.preferences.schemas import (
    ChannelPreferences,
    ChannelPreferencesUpdate,
)

SECURITY_NOTICES: frozenset[str] = frozenset(
    {
        EventType.PAYMENT_REFUND_FAILED,
        EventType.PAYMENT_DISPUTE_OPENED,
        EventType.PAYMENT_DISPUTE_FUNDS_WITHDRAWN,
        EventType.PAYMENT_DISPUTE_FUNDS_REINSTATED,
        EventType.PAYMENT_DISPUTE_CLOSED,
    }
)
"""Event types every user receives on every channel: money left or came back to the wallet
outside the user's own action. A sign-in from a new device joins them when it becomes an event."""

ALL_CHANNELS: frozenset[Channel] = frozenset(Channel)


@dataclass(frozen=True)
class Choice:
    """The channels that are on for one event type."""

    email: bool = True
    push: bool = True
    webhook: bool = True

    def channels(self) -> frozenset[Channel]:
        """The channels this choice leaves on."""
        return frozenset(channel for channel in Channel if getattr(self, channel.value))


def event_types() -> list[str]:
    """The event types that become notifications, in a stable order."""
    return sorted(events_consumed_by(ServiceName.NOTIFICATIONS))


async def channels_for(session: AsyncSession, user_id: str, event_type: str) -> frozenset[Channel]:
    """The channels the user receives `event_type` on, as their preferences stand now."""
    if event_type in SECURITY_NOTICES:
        return ALL_CHANNELS
    chosen = await repository.for_event(session, user_id, event_type)
    if chosen is None:
        return ALL_CHANNELS
    return Choice(*chosen).channels()


async def _choices(session: AsyncSession, user_id: str) -> dict[str, Choice]:
    stored = {
        row.event_type: Choice(row.email, row.push, row.webhook)
        for row in await repository.for_user(session, user_id)
    }
    # A row for an event type no longer delivered here is kept but not shown.
    return {
        event_type: Choice() if event_type in SECURITY_NOTICES else stored.get(event_type, Choice())
        for event_type in event_types()
    }


def _read(choices: Mapping[str, Choice]) -> dict[str, ChannelPreferences]:
    return {
        event_type: ChannelPreferences(
            email=choice.email,
            push=choice.push,
            webhook=choice.webhook,
            security_notice=event_type in SECURITY_NOTICES,
        )
        for event_type, choice in choices.items()
    }


async def get_preferences(session: AsyncSession, user_id: str) -> dict[str, ChannelPreferences]:
    """Every event type the user can receive, with the channels that are on."""
    return _read(await _choices(session, user_id))


async def update_preferences(
    session: AsyncSession, user_id: str, changes: Mapping[str, ChannelPreferencesUpdate]
) -> dict[str, ChannelPreferences]:
    """Apply a partial map of changes, all or nothing; returns the whole map after it."""
    known = set(event_types())
    unknown = sorted(set(changes) - known)
    if unknown:
        raise UnknownEventTypes(
            f"These are not event types you can receive: {', '.join(unknown)}.",
            unknown=unknown,
            known=sorted(known),
        )
    refused = sorted(
        event_type
        for event_type, change in changes.items()
        if event_type in SECURITY_NOTICES and False in (change.email, change.push, change.webhook)
    )
    if refused:
        raise SecurityNoticeRequired(
            "Security notices are sent on every channel and cannot be turned off: "
            f"{', '.join(refused)}.",
            event_types=refused,
        )
    # Two changes of one user at once apply one after the other: each merges into what the
    # other wrote, and neither loses the channels the other changed.
    await lock_for_transaction(session, f"notifications.notification_preferences:{user_id}")
    choices = await _choices(session, user_id)
    rows: list[dict[str, object]] = []
    for event_type, change in changes.items():
        if event_type in SECURITY_NOTICES:
            continue
        current = choices[event_type]
        choice = Choice(
            email=current.email if change.email is None else change.email,
            push=current.push if change.push is None else change.push,
            webhook=current.webhook if change.webhook is None else change.webhook,
        )
        choices[event_type] = choice
        rows.append(
            {
                "event_type": event_type,
                "email": choice.email,
                "push": choice.push,
                "webhook": choice.webhook,
            }
        )
    await repository.save(session, user_id, rows)
    return _read(choices)
