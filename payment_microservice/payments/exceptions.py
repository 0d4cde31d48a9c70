"""Problems the payments endpoints answer with."""

from __future__ import annotations

from micropay_common.errors import NotFound, ProblemError, ServiceUnavailable, UnprocessableEntity


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
