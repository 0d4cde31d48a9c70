"""What the transactions app holds while it runs: every service's shared parts, nothing more."""

from __future__ import annotations

from micropay_common.state import ServiceState
from transactions_microservice.settings import TransactionsSettings


class TransactionsState(ServiceState[TransactionsSettings]):
    """The shared parts, with the settings typed as the transactions service's."""
