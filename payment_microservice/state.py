"""What the payment app holds while it runs, besides every service's shared parts."""

from __future__ import annotations

from prometheus_client import Histogram

from micropay_common.state import ServiceState
from payment_microservice.payments.driver import PaymentDriver
from payment_microservice.paypal_api import PayPalApi
from payment_microservice.reconciliation.service import Reconciler
from payment_microservice.refunds.driver import RefundDriver
from payment_microservice.settings import PaymentSettings
from payment_microservice.stripe_api import StripeApi
from payment_microservice.wallet import WalletClient


class PaymentState(ServiceState[PaymentSettings]):
    """The shared parts plus Stripe, PayPal, the wallet and the drivers that use them (set at
    start-up)."""

    stripe_seconds: Histogram
    stripe: StripeApi
    paypal: PayPalApi
    wallet: WalletClient
    payment_driver: PaymentDriver
    refund_driver: RefundDriver
    reconciler: Reconciler
