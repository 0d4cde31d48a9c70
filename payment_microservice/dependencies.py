"""FastAPI dependencies of the payment service: what the app holds, typed."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from payment_microservice.payments.driver import PaymentDriver
from payment_microservice.paypal_api import PayPalApi
from payment_microservice.reconciliation.service import Reconciler
from payment_microservice.refunds.driver import RefundDriver
from payment_microservice.settings import PaymentSettings
from payment_microservice.state import PaymentState
from payment_microservice.stripe_api import StripeApi

SettingsDep = Annotated[PaymentSettings, Depends(PaymentState.provide(lambda s: s.settings))]
StripeDep = Annotated[StripeApi, Depends(PaymentState.provide(lambda s: s.stripe))]
PayPalDep = Annotated[PayPalApi, Depends(PaymentState.provide(lambda s: s.paypal))]
PaymentDriverDep = Annotated[
    PaymentDriver, Depends(PaymentState.provide(lambda s: s.payment_driver))
]
RefundDriverDep = Annotated[RefundDriver, Depends(PaymentState.provide(lambda s: s.refund_driver))]
ReconcilerDep = Annotated[Reconciler, Depends(PaymentState.provide(lambda s: s.reconciler))]
