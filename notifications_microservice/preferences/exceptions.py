"""Problems of the preferences domain."""

from __future__ import annotations

from micropay_common.errors import UnprocessableEntity


class UnknownEventTypes(UnprocessableEntity):
    """The map names event types the service does not turn into notifications."""

    type = "unknown_event_type"
    title = "Unknown event type"


class SecurityNoticeRequired(UnprocessableEntity):
    """The map turns off a channel of a security notice, which every user receives."""

    type = "security_notice_required"
    title = "Security notices cannot be turned off"
