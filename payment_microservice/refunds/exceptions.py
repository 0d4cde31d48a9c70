"""Problems the refunds endpoints answer with."""

from __future__ import annotations

from micropay_common.errors import Conflict


class PaymentNotRefundable(Conflict):
    """409: only a succeeded payment can be refunded."""

    type = "payment_not_refundable"
    title = "Payment not refundable"


class RefundExceedsPayment(Conflict):
    """409: the refunds would add up to more than the payment."""

    type = "refund_exceeds_payment"
    title = "Refund exceeds the refundable amount"


class RefundFailed(Conflict):
    """409: Stripe refused the refund; the wallet was not debited."""

    type = "refund_failed"
    title = "Refund failed"
