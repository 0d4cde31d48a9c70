"""The user's top-up allowance, asked of the payment service (which counts top-ups exactly).

The payment service counts a user's top-ups under a per-user lock in the transaction that
creates a payment, the only place that sees payments in flight; this service shows its answer
(`GET /internal/limits/top-ups`, with this service's own account) and never counts on its own.
"""

from __future__ import annotations

import logging

from pydantic import ValidationError

from micropay_common.errors import ServiceUnavailable, UpstreamError
from micropay_common.http import ServiceClient
from micropay_common.limits import TopUpAllowances

logger = logging.getLogger("micropay.transactions.limits")

TOP_UP_ALLOWANCES_PATH = "/internal/limits/top-ups"


class TopUpAllowanceClient:
    """Reads a user's top-up allowances from the payment service."""

    def __init__(self, client: ServiceClient) -> None:
        self.client = client

    async def allowances(self, user_id: str) -> TopUpAllowances | None:
        """The payment service's answer for the user; None (logged) when it gives none now."""
        try:
            response = await self.client.get(TOP_UP_ALLOWANCES_PATH, params={"user_id": user_id})
        except (ServiceUnavailable, UpstreamError) as exc:
            logger.warning("top-up allowances unavailable: %s", exc.detail)
            return None
        if not response.is_success:
            logger.warning(
                "top-up allowances unavailable: payment answered %s", response.status_code
            )
            return None
        try:
            return TopUpAllowances.model_validate_json(response.content)
        except ValidationError as exc:
            logger.warning("top-up allowances unavailable: unreadable answer: %s", exc)
            return None

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self.client.aclose()
