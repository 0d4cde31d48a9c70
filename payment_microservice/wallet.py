"""The wallet's holds, through the transactions service's internal API (service token)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from micropay_common.errors import Conflict, ServiceUnavailable, UpstreamError
from micropay_common.http import ServiceClient, ServiceResponse


class InsufficientFunds(Conflict):
    """409: the wallet cannot cover the amount."""

    type = "insufficient_funds"
    title = "Insufficient funds"


class WalletHasDebt(Conflict):
    """409: the user owes money in this currency (a lost dispute); nothing can be refunded."""

    type = "wallet_has_debt"
    title = "Wallet has debt"


class HoldNotCapturable(Exception):
    """The hold can no longer be captured or renewed (it expired, or was voided or captured)."""


def _problem(response: ServiceResponse) -> dict[str, Any]:
    try:
        body: Any = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _problem_type(response: ServiceResponse) -> str | None:
    found = _problem(response).get("type")
    return found if isinstance(found, str) else None


class WalletClient:
    """Places, captures and voids holds on a user's wallet."""

    def __init__(self, client: ServiceClient) -> None:
        self.client = client

    async def hold(self, *, user_id: str, amount: int, currency: str, reference: str) -> str:
        """Reserve `amount` on the wallet (once per reference); returns the hold's id.

        Refused with InsufficientFunds when the wallet cannot cover it, and with WalletHasDebt
        while the user owes money in the currency.
        """
        response = await self.client.post(
            "/internal/holds",
            json={
                "user_id": user_id,
                "amount": amount,
                "currency": currency,
                "reference": reference,
            },
        )
        if response.status_code == 409 and _problem_type(response) == "insufficient_funds":
            raise InsufficientFunds(
                "The wallet does not hold enough to cover this refund.",
                amount=amount,
                currency=currency,
            )
        if response.status_code == 409 and _problem_type(response) == "wallet_has_debt":
            extra: dict[str, Any] = {"currency": currency}
            owed = _problem(response).get("owed")
            if isinstance(owed, int):
                extra["owed"] = owed
            raise WalletHasDebt(
                "You owe money in this currency after a disputed payment; money coming in pays "
                "it first, and nothing can be refunded until it is paid.",
                **extra,
            )
        self._expect_success(response, "placing a hold")
        return str(response.json()["id"])

    async def capture(self, hold_id: str) -> None:
        """Turn the hold into the wallet's refund debit (idempotent)."""
        response = await self.client.post(f"/internal/holds/{hold_id}/capture")
        if response.status_code in (404, 409):
            raise HoldNotCapturable(f"hold {hold_id}: {_problem_type(response)}")
        self._expect_success(response, "capturing a hold")

    async def renew(self, hold_id: str) -> datetime:
        """Keep an active hold for the wallet's hold TTL from now; returns its new expiry."""
        response = await self.client.post(f"/internal/holds/{hold_id}/renew")
        if response.status_code in (404, 409):
            raise HoldNotCapturable(f"hold {hold_id}: {_problem_type(response)}")
        self._expect_success(response, "renewing a hold")
        return datetime.fromisoformat(str(response.json()["expires_at"]))

    async def void(self, hold_id: str) -> None:
        """Release the hold (idempotent; a hold already gone is fine)."""
        response = await self.client.post(f"/internal/holds/{hold_id}/void")
        if response.status_code in (404, 409):
            return
        self._expect_success(response, "voiding a hold")

    @staticmethod
    def _expect_success(response: ServiceResponse, what: str) -> None:
        if response.is_success:
            return
        if response.status_code >= 500:
            raise ServiceUnavailable(f"The wallet failed {what} ({response.status_code}).")
        raise UpstreamError(f"The wallet refused {what} ({response.status_code}).")

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self.client.aclose()
