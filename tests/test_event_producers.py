"""What each producer really publishes is accepted by every consumer of it, at the edges of what
the producer allows: the largest and smallest amounts, and currencies the wallets do not list.

Each producer's own service code runs on its own schema and role in a transaction that is
rolled back, so nothing it writes reaches another test's relay.
"""

from __future__ import annotations

import importlib
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from auth_microservice.users import service as users
from auth_microservice.users.schemas import normalise_email
from micropay_common.db import create_engine, create_sessionmaker
from micropay_common.events import EventEnvelope, EventType, consumers_of, event_model
from micropay_common.money import MAX_AMOUNT, SUPPORTED_CURRENCIES
from micropay_common.services import SERVICES, ServiceName
from micropay_common.tables import outbox
from micropay_testing.events import handled_events
from payment_microservice.payments import repository as payments_repository
from payment_microservice.payments import service as payments
from payment_microservice.refunds import repository as refunds_repository
from payment_microservice.refunds import service as refunds
from payment_microservice.stripe_api import RefundState
from transactions_microservice.accounts import service as accounts
from transactions_microservice.funding import service as funding
from transactions_microservice.transfers import service as transfers
from transactions_microservice.transfers.schemas import TransferCreate

# The payment service takes any ISO code its PAYMENT_AMOUNT_LIMITS lists, wallet currency or not.
PAYMENT_CURRENCIES = [*SUPPORTED_CURRENCIES, "CHF", "KWD"]

Published = list[tuple[str, dict[str, Any]]]


@pytest.fixture(scope="module")
def consumers_apply() -> dict[str, frozenset[str]]:
    """The event types each consumer's real app applies."""
    applied: dict[str, frozenset[str]] = {}
    for name, service in SERVICES.items():
        handled = handled_events(importlib.import_module(f"{service.package}.main").app)
        if handled is not None:
            applied[name] = handled
    return applied


@pytest.fixture
def producing(
    service_settings: Callable[..., Any],
) -> Callable[[ServiceName], Any]:
    """A session of a producer's role on its schema, rolled back at the end; what it published."""

    @asynccontextmanager
    async def open_session(name: ServiceName) -> AsyncIterator[tuple[AsyncSession, Published]]:
        engine = create_engine(service_settings(str(name)), SERVICES[name].schema)
        published: Published = []
        try:
            # Never committed: closing the session rolls everything back.
            async with create_sessionmaker(engine)() as session:
                before = await session.scalar(select(func.coalesce(func.max(outbox.c.id), 0)))
                yield session, published
                rows = await session.execute(
                    select(outbox.c.consumer, outbox.c.payload).where(outbox.c.id > before)
                )
                published.extend((row.consumer, row.payload) for row in rows)
        finally:
            await engine.dispose()

    return open_session


def assert_accepted(
    published: Published, expected: set[EventType], consumers_apply: dict[str, frozenset[str]]
) -> None:
    """Each row reaches a consumer that applies its type, and its data is that type's model."""
    assert {EventEnvelope.model_validate(payload).type for _, payload in published} == expected
    for consumer, payload in published:
        envelope = EventEnvelope.model_validate(payload)
        assert consumer in consumers_of(envelope.type)
        assert envelope.type in consumers_apply[consumer]
        # What the consumer's events router does with the data before its handler sees it.
        event_model(envelope.type).model_validate(envelope.data)


async def test_auth_registrations(producing, consumers_apply) -> None:
    async with producing(ServiceName.AUTH) as (session, published):
        # As the register endpoint hands it over: trimmed, lower-cased, validated.
        email = normalise_email(f" Edge.Case+{uuid.uuid4().hex[:6]}@Example.COM ")
        await users.add_user(session, uuid.uuid4(), email, confirmed=True)
    assert_accepted(published, {EventType.USER_REGISTERED}, consumers_apply)


async def new_payment(session: AsyncSession, amount: int, currency: str) -> uuid.UUID:
    """A payment row as the payment service writes it before asking Stripe."""
    payment_id = uuid.uuid4()
    await payments_repository.insert_if_new(
        session,
        {
            "id": payment_id,
            "user_id": str(uuid.uuid4()),
            "amount": amount,
            "currency": currency,
            "status": "processing",
            "payment_method": "pm_card_visa",
            "idempotency_key": str(uuid.uuid4()),
            "request_hash": "0" * 64,
        },
    )
    return payment_id


@pytest.mark.parametrize("currency", PAYMENT_CURRENCIES)
@pytest.mark.parametrize("amount", [1, MAX_AMOUNT])
async def test_payment_successes_failures_and_refunds(
    producing, consumers_apply, amount: int, currency: str
) -> None:
    async with producing(ServiceName.PAYMENT) as (session, published):
        failed = await new_payment(session, amount, currency)
        await payments.mark_failed(
            session,
            failed,
            code="card_declined",
            message="Your card was declined.",
            decline_code="insufficient_funds",
            links={},
        )
        succeeded = await new_payment(session, amount, currency)
        payment = await payments.mark_succeeded(session, succeeded, {})
        # A refund made at Stripe (no hold), then one of ours whose hold was captured.
        stripe_refund = RefundState(
            id=f"re_{uuid.uuid4().hex}",
            status="succeeded",
            amount=max(amount // 2, 1),
            currency=currency.lower(),
            payment_intent_id=None,
            charge_id=None,
        )
        await refunds.record_stripe_refund(session, payment, stripe_refund)
        if amount > 1:
            ours = await refunds_repository.insert_if_new(
                session,
                {
                    "id": uuid.uuid4(),
                    "payment_id": succeeded,
                    "amount": amount - stripe_refund.amount,
                    "currency": currency,
                    "status": "pending",
                    "origin": "api",
                    "requested_by": payment.user_id,
                    "idempotency_key": str(uuid.uuid4()),
                    "request_hash": "0" * 64,
                },
            )
            assert ours is not None
            await refunds.settle(session, ours.id)
            # Stripe then fails it: the debit is reversed.
            await refunds.fail_at_stripe(
                session, ours.id, code="expired_or_canceled_card", message=None
            )
    expected = {EventType.PAYMENT_FAILED, EventType.PAYMENT_SUCCEEDED, EventType.PAYMENT_REFUNDED}
    if amount > 1:
        expected.add(EventType.PAYMENT_REFUND_FAILED)
    assert_accepted(published, expected, consumers_apply)


@pytest.mark.parametrize("currency", list(SUPPORTED_CURRENCIES))
@pytest.mark.parametrize("amount", [1, MAX_AMOUNT])
async def test_transactions_transfers(
    producing, consumers_apply, idle_transactions_settings, amount: int, currency: str
):
    # The largest amount an event may carry is far above the default transfer limits.
    unlimited_transfers = idle_transactions_settings.model_copy(
        update={"transfer_limit_per_transaction": "", "transfer_limit_per_day": ""}
    )
    async with producing(ServiceName.TRANSACTIONS) as (session, published):
        sender, recipient = (str(uuid.uuid4()) for _ in range(2))
        sender_email, recipient_email = (f"{user}@example.com" for user in (sender, recipient))
        await accounts.register_user(session, sender, sender_email, currency)
        await accounts.register_user(session, recipient, recipient_email, currency)
        await funding.credit_top_up(
            session,
            payment_id=f"pay_{uuid.uuid4().hex}",
            user_id=sender,
            amount=amount,
            currency=currency,
        )
        request = TransferCreate(
            to_email=recipient_email.upper(),
            amount=amount,
            currency=currency,
            description="é" * 500,
        )
        await transfers.create_transfer(
            session, sender, sender_email, request, settings=unlimited_transfers
        )
    assert_accepted(published, {EventType.TRANSFER_COMPLETED}, consumers_apply)
