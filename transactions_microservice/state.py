"""What the transactions app holds while it runs: the shared parts and its payment client."""

from __future__ import annotations

from micropay_common.state import ServiceState
from transactions_microservice.limits.top_ups import TopUpAllowanceClient
from transactions_microservice.settings import TransactionsSettings


class TransactionsState(ServiceState[TransactionsSettings]):
    """The shared parts plus the payment service's top-up allowances (set at start-up)."""

    top_ups: TopUpAllowanceClient
