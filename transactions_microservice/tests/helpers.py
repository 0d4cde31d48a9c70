"""Helpers of the transactions tests: members, events, reading balances and history."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from micropay_testing.cognito import CognitoUser
from micropay_testing.http import bearer, every_item


@dataclass
class Member:
    """A Cognito user whose registration the transactions service has received."""

    user: CognitoUser

    @property
    def id(self) -> str:
        """The user id (Cognito `sub`)."""
        return self.user.sub

    @property
    def email(self) -> str:
        """The email, which is also the Cognito username."""
        return self.user.username

    @property
    def headers(self) -> dict[str, str]:
        """Authorization header with the user's access token."""
        return bearer(self.user.access_token)


async def balance_of(client: httpx.AsyncClient, member: Member, currency: str = "USD") -> int:
    """The member's available balance in one currency (0 without a wallet)."""
    response = await client.get("/transactions/balance", headers=member.headers)
    assert response.status_code == 200, response.text
    for wallet in response.json()["balances"]:
        if wallet["currency"] == currency:
            return int(wallet["available"])
    return 0


async def all_entries(
    client: httpx.AsyncClient, member: Member, limit: int = 100, **filters: Any
) -> list[dict[str, Any]]:
    """Every history entry of the member, newest first, page by page."""
    return await every_item(client, "/transactions", member.headers, limit=limit, **filters)


async def ledger_check(client: httpx.AsyncClient, service_headers: dict[str, str]) -> Any:
    """The internal invariant check's result."""
    response = await client.get("/internal/ledger/check", headers=service_headers)
    assert response.status_code == 200, response.text
    return response.json()
