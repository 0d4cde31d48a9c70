"""Problems of holds."""

from __future__ import annotations

from micropay_common.errors import Conflict, NotFound


class HoldNotFound(NotFound):
    """404: no hold with this id."""

    type = "hold_not_found"
    title = "Hold not found"


class HoldNotActive(Conflict):
    """409: the hold was already resolved another way (captured, voided or expired)."""

    type = "hold_not_active"
    title = "Hold not active"


class HoldReferenceConflict(Conflict):
    """409: the reference names a hold for another user, amount or currency."""

    type = "hold_reference_conflict"
    title = "Hold reference already used"
