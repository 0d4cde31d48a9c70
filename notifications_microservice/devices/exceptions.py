"""Problems of the devices domain."""

from __future__ import annotations

from micropay_common.errors import Conflict, NotFound, ServiceUnavailable, UnprocessableEntity


class DeviceNotFound(NotFound):
    """No such device among the caller's."""

    title = "Device not found"


class InvalidDeviceToken(UnprocessableEntity):
    """The push service refused the token."""

    type = "invalid_device_token"
    title = "Invalid device token"


class PushUnavailable(ServiceUnavailable):
    """SNS did not answer, or the push platform is not set up."""

    type = "push_unavailable"
    title = "Push notifications unavailable"


class TooManyDevices(Conflict):
    """The caller already has the most devices allowed."""

    type = "too_many_devices"
    title = "Too many devices"
