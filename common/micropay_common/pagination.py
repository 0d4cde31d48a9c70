"""Cursor pagination as DESIGN.md spells it: `?limit=1..100&starting_after=<id>`, newest first.

Every list endpoint reads `limit: Limit = 10` and `starting_after`, fetches up to `limit + 1`
rows after the cursor, and answers `SomePage.of(items, limit)`; a service names its page
model by subclassing, `class PaymentList(Page[PaymentRead])`, so the OpenAPI schema keeps a
readable name.
"""

from __future__ import annotations

from typing import Annotated, Any, Generic, Self, TypeVar

from fastapi import Query
from pydantic import BaseModel

from micropay_common.errors import BadRequest

ItemT = TypeVar("ItemT")

Limit = Annotated[int, Query(ge=1, le=100, description="Page size (1-100).")]


class Page(BaseModel, Generic[ItemT]):
    """One page of a list, newest first."""

    data: list[ItemT]
    has_more: bool

    @classmethod
    def of(cls, items: list[ItemT], limit: int) -> Self:
        """A page from up to `limit + 1` items fetched (the extra one only tells there is more)."""
        return cls(data=items[:limit], has_more=len(items) > limit)


# For a list route's `responses=`, so the OpenAPI document names the 400 it may answer.
LIST_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "`starting_after` is not in the caller's list (`invalid_cursor`)"}
}


class InvalidCursor(BadRequest):
    """`starting_after` names nothing in the caller's list."""

    type = "invalid_cursor"
    title = "Invalid cursor"
