"""Stripe through the official stripe-python client, reduced to what the service needs.

The same code talks to Stripe in production and to localstripe locally and in tests: only
`STRIPE_API_BASE` differs. Calls use stripe-python's async methods (httpx), and its own retries
(`STRIPE_MAX_NETWORK_RETRIES`, exponential backoff) with the idempotency key we pass, so a
timed-out or 5xx call is repeated without risk of a second charge. Stripe's answers become the
small immutable records below, and its errors two exceptions: `StripeRefused` (Stripe answered
no: a declined card, an invalid request) and `StripeUnavailable` (no usable answer).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import stripe
from prometheus_client import CollectorRegistry, Histogram

from micropay_common import telemetry
from payment_microservice.settings import PaymentSettings

logger = logging.getLogger("micropay.payment.stripe")

T = TypeVar("T")

STRIPE_SECONDS = "micropay_stripe_request_duration_seconds"


@dataclass(frozen=True)
class IntentState:
    """A PaymentIntent as far as a payment's outcome depends on it."""

    id: str
    status: str
    charge_id: str | None = None
    client_secret: str | None = None
    next_action: dict[str, Any] | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    decline_code: str | None = None
    payment_id: str | None = None
    amount: int | None = None
    currency: str | None = None
    """Upper case, as our payments record it."""
    three_d_secure: bool = False
    """Stripe's charge says 3-D Secure authenticated the card holder (when the charge is
    expanded in the answer; a payment that succeeds after `requires_action` counts too)."""


@dataclass(frozen=True)
class RefundState:
    """A Stripe Refund."""

    id: str
    status: str
    amount: int
    currency: str
    payment_intent_id: str | None
    charge_id: str | None
    refund_id: str | None = None
    """Our refund id, from the refund's metadata, when we created it."""
    failure_reason: str | None = None
    """Stripe's reason for a failed refund (`expired_or_canceled_card`, ...)."""


@dataclass(frozen=True)
class DisputeState:
    """A Stripe Dispute, with what its balance transactions moved."""

    id: str
    status: str
    """Stripe's: `warning_needs_response`, `needs_response`, `under_review`, `won`, `lost`, ..."""
    amount: int
    currency: str
    charge_id: str | None
    payment_intent_id: str | None
    reason: str | None = None
    withdrawn: int = 0
    """What Stripe took from our balance for it (its negative balance transactions)."""
    reinstated: int = 0
    """What Stripe gave back (its positive balance transactions)."""
    fee: int = 0
    """Stripe's dispute fee charged to us (positive fees on its balance transactions)."""
    fee_returned: int = 0
    """Of that fee, what Stripe gave back (negative fees)."""
    fee_currency: str | None = None


class StripeRefused(Exception):
    """Stripe answered and said no (declined card, invalid request); retrying will not help."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None,
        decline_code: str | None = None,
        card_error: bool = False,
        intent_id: str | None = None,
        charge_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.decline_code = decline_code
        self.card_error = card_error
        self.intent_id = intent_id
        self.charge_id = charge_id


class StripeObjectMissing(StripeRefused):
    """Stripe has no object with this id (a forged or foreign id)."""


class StripeUnavailable(Exception):
    """Stripe could not be reached, timed out or failed on its side, retries included."""


def _object_id(value: Any) -> str | None:
    """An expandable field's id whether Stripe sent the id or the object."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        found = value.get("id")
        return str(found) if found else None
    return None


def intent_state(data: Mapping[str, Any]) -> IntentState:
    """An IntentState from a PaymentIntent as JSON (an API answer or a webhook's object)."""
    error = data.get("last_payment_error") or {}
    metadata = data.get("metadata") or {}
    next_action = data.get("next_action")
    return IntentState(
        id=str(data["id"]),
        status=str(data["status"]),
        charge_id=_object_id(data.get("latest_charge")),
        client_secret=data.get("client_secret"),
        next_action=dict(next_action) if next_action else None,
        failure_code=error.get("code"),
        failure_message=error.get("message"),
        decline_code=error.get("decline_code"),
        payment_id=metadata.get("payment_id"),
        amount=data.get("amount") if isinstance(data.get("amount"), int) else None,
        currency=str(data["currency"]).upper() if data.get("currency") else None,
        three_d_secure=_authenticated(data.get("latest_charge")),
    )


def _authenticated(charge: Any) -> bool:
    """Whether a charge object (not a bare id) records a successful 3-D Secure authentication:
    `payment_method_details.card.three_d_secure.result` is `authenticated`."""
    if not isinstance(charge, Mapping):
        return False
    details = charge.get("payment_method_details") or {}
    card = details.get("card") or {} if isinstance(details, Mapping) else {}
    secure = card.get("three_d_secure") or {} if isinstance(card, Mapping) else {}
    return isinstance(secure, Mapping) and secure.get("result") == "authenticated"


def refund_state(data: Mapping[str, Any]) -> RefundState:
    """A RefundState from a Refund as JSON."""
    metadata = data.get("metadata") or {}
    return RefundState(
        id=str(data["id"]),
        status=str(data.get("status") or "succeeded"),
        amount=int(data["amount"]),
        currency=str(data["currency"]).upper(),
        payment_intent_id=_object_id(data.get("payment_intent")),
        charge_id=_object_id(data.get("charge")),
        refund_id=metadata.get("refund_id"),
        failure_reason=data.get("failure_reason"),
    )


def dispute_state(data: Mapping[str, Any]) -> DisputeState:
    """A DisputeState from a Dispute as JSON; `balance_transactions` are its money movements."""
    withdrawn = reinstated = fee = fee_returned = 0
    fee_currency = None
    for txn in data.get("balance_transactions") or []:
        if not isinstance(txn, Mapping):
            continue
        amount = int(txn.get("amount") or 0)
        txn_fee = int(txn.get("fee") or 0)
        if amount < 0:
            withdrawn -= amount
        else:
            reinstated += amount
        if txn_fee > 0:
            fee += txn_fee
        else:
            fee_returned -= txn_fee
        if txn_fee and txn.get("currency"):
            fee_currency = str(txn["currency"]).upper()
    return DisputeState(
        id=str(data["id"]),
        status=str(data["status"]),
        amount=int(data["amount"]),
        currency=str(data["currency"]).upper(),
        charge_id=_object_id(data.get("charge")),
        payment_intent_id=_object_id(data.get("payment_intent")),
        reason=data.get("reason"),
        withdrawn=withdrawn,
        reinstated=reinstated,
        fee=fee,
        fee_returned=fee_returned,
        fee_currency=fee_currency,
    )


def _as_dict(obj: stripe.StripeObject) -> dict[str, Any]:
    return obj.to_dict()


def stripe_histogram(registry: CollectorRegistry | None = None) -> Histogram:
    """The histogram of Stripe call durations, in `registry` (an app's /metrics)."""
    return Histogram(
        STRIPE_SECONDS,
        "Time spent waiting on Stripe per call, its own retries included.",
        ["operation", "outcome"],
        registry=registry if registry is not None else CollectorRegistry(),
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    )


class StripeApi:
    """The Stripe calls of the payment service, each timed in `micropay_stripe_request_*`."""

    def __init__(
        self,
        client: stripe.StripeClient,
        http_client: stripe.HTTPXClient,
        seconds: Histogram | None = None,
    ) -> None:
        self.client = client
        self._http_client = http_client
        self._seconds = seconds if seconds is not None else stripe_histogram()

    @classmethod
    def from_settings(
        cls, settings: PaymentSettings, seconds: Histogram | None = None
    ) -> StripeApi:
        """A client for STRIPE_API_BASE (localstripe) or, when unset, Stripe itself."""
        http_client = stripe.HTTPXClient(timeout=settings.stripe_timeout_seconds)
        base = {"api": settings.stripe_api_base} if settings.stripe_api_base else None
        client = stripe.StripeClient(
            settings.stripe_api_key,
            base_addresses=base,  # type: ignore[arg-type]
            http_client=http_client,
            max_network_retries=settings.stripe_max_network_retries,
        )
        return cls(client, http_client, seconds)

    async def create_and_confirm(
        self,
        *,
        payment_id: str,
        user_id: str,
        amount: int,
        currency: str,
        payment_method: str,
        description: str | None,
        idempotency_key: str,
    ) -> IntentState:
        """Create and confirm a card PaymentIntent in one call; a decline raises StripeRefused."""
        metadata = {"payment_id": payment_id, "user_id": user_id}
        if description:
            metadata["description"] = description
        params: dict[str, Any] = {
            "amount": amount,
            "currency": currency.lower(),
            "payment_method": payment_method,
            "payment_method_types": ["card"],
            "confirm": True,
            "metadata": metadata,
            # The charge as an object, so its 3-D Secure outcome comes with the answer.
            "expand": ["latest_charge"],
        }
        intent = await self._call(
            "create_payment_intent",
            self.client.v1.payment_intents.create_async(
                params,  # type: ignore[arg-type]
                {"idempotency_key": idempotency_key},
            ),
        )
        return intent_state(_as_dict(intent))

    async def retrieve_intent(self, intent_id: str) -> IntentState:
        """The PaymentIntent as Stripe has it now."""
        intent = await self._call(
            "retrieve_payment_intent",
            self.client.v1.payment_intents.retrieve_async(intent_id, {"expand": ["latest_charge"]}),
        )
        return intent_state(_as_dict(intent))

    async def cancel_intent(self, intent_id: str, *, idempotency_key: str) -> IntentState:
        """Cancel a PaymentIntent nobody will complete (abandoned 3-D Secure)."""
        intent = await self._call(
            "cancel_payment_intent",
            self.client.v1.payment_intents.cancel_async(
                intent_id, options={"idempotency_key": idempotency_key}
            ),
        )
        return intent_state(_as_dict(intent))

    async def create_refund(
        self,
        *,
        refund_id: str,
        payment_id: str,
        payment_intent_id: str,
        amount: int,
        reason: str | None,
        idempotency_key: str,
    ) -> RefundState:
        """Refund part or all of a PaymentIntent's charge."""
        metadata = {"refund_id": refund_id, "payment_id": payment_id}
        if reason:
            # In metadata rather than `reason`, which localstripe does not accept.
            metadata["reason"] = reason
        refund = await self._call(
            "create_refund",
            self.client.v1.refunds.create_async(
                {"payment_intent": payment_intent_id, "amount": amount, "metadata": metadata},
                {"idempotency_key": idempotency_key},
            ),
        )
        return refund_state(_as_dict(refund))

    async def retrieve_refund(self, stripe_refund_id: str) -> RefundState:
        """The Refund as Stripe has it now."""
        refund = await self._call(
            "retrieve_refund", self.client.v1.refunds.retrieve_async(stripe_refund_id)
        )
        return refund_state(_as_dict(refund))

    async def list_refunds(self, charge_id: str) -> list[RefundState]:
        """Every refund of a charge (webhooks may carry a charge without its refunds)."""
        page = await self._call(
            "list_refunds", self.client.v1.refunds.list_async({"charge": charge_id, "limit": 100})
        )
        return [refund_state(_as_dict(item)) for item in page.data]

    async def retrieve_dispute(self, dispute_id: str) -> DisputeState:
        """The Dispute as Stripe has it now, with its balance transactions."""
        dispute = await self._call(
            "retrieve_dispute", self.client.v1.disputes.retrieve_async(dispute_id)
        )
        return dispute_state(_as_dict(dispute))

    async def _call(self, operation: str, awaitable: Awaitable[T]) -> T:
        started = time.perf_counter()
        outcome = "error"
        # A client span of its own (the stripe SDK has no instrumentation): its HTTP requests,
        # retries included, are children of it.
        with telemetry.client_span(
            f"stripe {operation}", {"rpc.system": "stripe", "rpc.method": operation}
        ) as span:
            try:
                result = await self._translate(awaitable)
                outcome = "ok"
                return result
            except StripeRefused:
                outcome = "refused"
                raise
            finally:
                self._seconds.labels(operation, outcome).observe(time.perf_counter() - started)
                if outcome == "error":
                    telemetry.mark_failed(span, "Stripe gave no usable answer")

    async def _translate(self, awaitable: Awaitable[T]) -> T:
        try:
            return await awaitable
        except stripe.CardError as exc:
            error = exc.error
            raise StripeRefused(
                exc.user_message or "The card was declined.",
                code=exc.code,
                decline_code=getattr(error, "decline_code", None) if error else None,
                card_error=True,
                intent_id=_object_id(getattr(error, "payment_intent", None)) if error else None,
                charge_id=_object_id(getattr(error, "charge", None)) if error else None,
            ) from exc
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:
                raise StripeObjectMissing(
                    exc.user_message or "Stripe has no such object.", code=exc.code
                ) from exc
            raise StripeRefused(
                exc.user_message or "Stripe refused the request.", code=exc.code
            ) from exc
        except stripe.StripeError as exc:
            # Connection errors, timeouts, 5xx, rate limits, idempotency or key problems: no
            # usable answer. What was asked may or may not have happened; the idempotency key
            # makes asking again safe.
            logger.warning("Stripe call failed: %s: %s", type(exc).__name__, exc)
            raise StripeUnavailable(str(exc) or type(exc).__name__) from exc

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._http_client.close_async()  # type: ignore[no-untyped-call]
