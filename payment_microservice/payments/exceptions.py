"""Problems the payments endpoints answer with."""

from __future__ import annotations

from micropay_common.errors import (
    Conflict,
    NotFound,
    ProblemError,
    ServiceUnavailable,
    UnprocessableEntity,
)


class PaymentNotFound(NotFound):
    """404: no such payment visible to the caller."""

    type = "payment_not_found"
    title = "Payment not found"


class UnsupportedCurrency(UnprocessableEntity):
    """422: the currency is not one the wallet holds."""

    type = "unsupported_currency"
    title = "Unsupported currency"


class AmountOutOfRange(UnprocessableEntity):
    """422: the amount is below the minimum or above the maximum for its currency."""

    type = "amount_out_of_range"
    title = "Amount out of range"


class LimitExceeded(UnprocessableEntity):
    """422: the top-up would take the day's top-ups above the user's daily limit.

    With `limit_kind` (`top_up_per_day`), `limit`, `remaining`, `currency` and `resets_at`.
    """

    type = "limit_exceeded"
    title = "Limit exceeded"


class CardDeclined(ProblemError):
    """402: the card issuer or Stripe declined the charge."""

    status = 402
    type = "card_declined"
    title = "Card declined"


class PaymentFailed(ProblemError):
    """402: the payment failed for a reason other than a decline (e.g. failed 3-D Secure)."""

    status = 402
    type = "payment_failed"
    title = "Payment failed"


class PaymentProviderUnavailable(ServiceUnavailable):
    """503: Stripe did not answer; the payment stays `processing` and is settled later."""

    type = "payment_provider_unavailable"
    title = "Payment provider unavailable"


class ProviderNotOffered(UnprocessableEntity):
    """422: this deployment does not offer the provider (PayPal without credentials)."""

    type = "provider_not_offered"
    title = "Provider not offered"


class PaymentNotApproved(Conflict):
    """409: the buyer has not approved the PayPal order yet; send them to `next_action`."""

    type = "payment_not_approved"
    title = "Payment not approved"


class PaymentNotConfirmable(Conflict):
    """409: only a PayPal payment is confirmed by this call (a card's 3-D Secure is not)."""

    type = "payment_not_confirmable"
    title = "Payment not confirmable"


class PaymentNotCancelable(Conflict):
    """409: the payment is settled, or not a PayPal payment awaiting its buyer."""

    type = "payment_not_cancelable"
    title = "Payment not cancelable"
