"""The rules of money requests: asked by email, paid as a transfer, closed once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from micropay_common.events import (
    EventType,
    MoneyRequestCanceled,
    MoneyRequestCreated,
    MoneyRequestDeclined,
    MoneyRequestExpired,
    MoneyRequestPaid,
    MoneyRequestReceived,
)
from micropay_common.idempotency import StoredResponse
from micropay_common.outbox import publish
from micropay_common.pagination import InvalidCursor
from transactions_microservice.accounts import service as accounts
from transactions_microservice.limits import service as limits
from transactions_microservice.models import MoneyRequestStatus
from transactions_microservice.requests import repository
from transactions_microservice.requests.exceptions import (
    MoneyRequestNotFound,
    MoneyRequestNotOpen,
    MoneyRequestToSelf,
)
from transactions_microservice.requests.repository import MoneyRequestRecord
from transactions_microservice.requests.schemas import (
    MoneyRequestCreate,
    MoneyRequestRead,
    MoneyRequestRole,
)
from transactions_microservice.settings import TransactionsSettings
from transactions_microservice.transfers import service as transfers
from transactions_microservice.transfers.schemas import TransferCreate

SWEEP_BATCH = 100

_ROLE_COLUMNS = {MoneyRequestRole.PAYER: "payer_id", MoneyRequestRole.REQUESTER: "requester_id"}


def read(record: MoneyRequestRecord) -> MoneyRequestRead:
    """The API's view of a request: emails only, never the payer's account."""
    return MoneyRequestRead(
        id=record.id,
        status=MoneyRequestStatus(record.status),
        requester_email=record.requester_email,
        from_email=record.payer_email,
        amount=record.amount,
        currency=record.currency,
        note=record.note,
        transfer_id=record.transfer_id,
        created_at=record.created_at,
        expires_at=record.expires_at,
        resolved_at=record.resolved_at,
    )


def _data(record: MoneyRequestRecord) -> dict[str, object]:
    return {
        "request_id": str(record.id),
        "requester_id": record.requester_id,
        "requester_email": record.requester_email,
        "payer_id": record.payer_id,
        "payer_email": record.payer_email,
        "amount": record.amount,
        "currency": record.currency,
        "note": record.note,
    }


def _event_id(record: MoneyRequestRecord, change: EventType) -> uuid.UUID:
    # One event per change of one request, whoever publishes it and however often.
    return uuid.uuid5(record.id, change)


async def create_request(
    session: AsyncSession,
    requester_id: str,
    requester_email: str,
    request: MoneyRequestCreate,
    *,
    settings: TransactionsSettings,
) -> MoneyRequestRead:
    """Open a request to the owner of `from_email` and tell both sides.

    The answer is the same whether or not the email has an account: a request to an unknown
    email waits (`payer_id` empty) until that account's registration, and expires as usual.
    """
    payer_email = accounts.normalise_email(request.from_email)
    own_email = accounts.normalise_email(requester_email)
    if payer_email == own_email:
        raise MoneyRequestToSelf("You cannot ask yourself for money.")
    # Paying it is a transfer: an amount no transfer may carry is refused now, not then.
    limits.check_transfer_amount(settings, request.amount, request.currency)
    payer_id = await repository.user_id_by_email(session, payer_email)
    if payer_id == requester_id:
        raise MoneyRequestToSelf("You cannot ask yourself for money.")
    record = await repository.insert(
        session,
        request_id=uuid.uuid4(),
        requester_id=requester_id,
        requester_email=own_email,
        payer_email=payer_email,
        payer_id=payer_id,
        amount=request.amount,
        currency=request.currency,
        note=request.note,
        ttl_seconds=settings.money_request_ttl_seconds,
    )
    await publish(
        session,
        MoneyRequestCreated(**_data(record)),
        event_id=_event_id(record, MoneyRequestCreated.event_type),
    )
    if payer_id is not None:
        await publish(
            session,
            MoneyRequestReceived(**_data(record)),
            event_id=_event_id(record, MoneyRequestReceived.event_type),
        )
    return read(record)


async def list_requests(
    session: AsyncSession,
    user_id: str,
    *,
    role: MoneyRequestRole,
    status: MoneyRequestStatus | None,
    limit: int,
    starting_after: uuid.UUID | None,
) -> list[MoneyRequestRead]:
    """Up to `limit + 1` of the user's requests on one side, newest first."""
    column = _ROLE_COLUMNS[role]
    after = None
    if starting_after is not None:
        after = await repository.get(session, starting_after)
        if after is None or getattr(after, column) != user_id:
            raise InvalidCursor(f"starting_after: you have no such request {starting_after}.")
    found = await repository.page(
        session, role_column=column, user_id=user_id, status=status, limit=limit + 1, after=after
    )
    return [read(record) for record in found]


async def _open_for(
    session: AsyncSession, request_id: uuid.UUID, user_id: str, role: MoneyRequestRole
) -> MoneyRequestRecord:
    """The request, locked, if `user_id` is its side `role` and it is still open."""
    record = await repository.get(session, request_id, lock=True)
    if record is None or getattr(record, _ROLE_COLUMNS[role]) != user_id:
        raise MoneyRequestNotFound(f"You have no money request {request_id} to answer.")
    if record.status == MoneyRequestStatus.OPEN and record.expires_at <= datetime.now(UTC):
        # Past its expiry it is as good as expired; the sweep writes that down.
        raise MoneyRequestNotOpen(
            "The request has expired.", request_status=MoneyRequestStatus.EXPIRED.value
        )
    if record.status != MoneyRequestStatus.OPEN:
        raise MoneyRequestNotOpen(f"The request is {record.status}.", request_status=record.status)
    return record


async def pay(
    session: AsyncSession,
    payer_id: str,
    payer_email: str,
    request_id: uuid.UUID,
    *,
    settings: TransactionsSettings,
) -> MoneyRequestRead:
    """Send the requested amount to the requester and mark the request paid, in one transaction.

    The request's row lock makes a second payment wait for the first and then find it paid
    (409): the money moves once.
    """
    record = await _open_for(session, request_id, payer_id, MoneyRequestRole.PAYER)
    transfer = await transfers.create_transfer(
        session,
        payer_id,
        payer_email,
        TransferCreate(
            to_email=record.requester_email,
            amount=record.amount,
            currency=record.currency,
            description=record.note,
        ),
        settings=settings,
    )
    if isinstance(transfer, StoredResponse):  # only with an idempotency claim, never given here
        raise RuntimeError("a transfer without a claim answered with a stored response")
    paid = await repository.close(session, record.id, MoneyRequestStatus.PAID, transfer.id)
    await publish(
        session,
        MoneyRequestPaid(
            **_data(paid),
            transfer_id=str(transfer.id),
            event_id=_event_id(paid, MoneyRequestPaid.event_type),
        ),
    )
    return read(paid)


async def decline(session: AsyncSession, payer_id: str, request_id: uuid.UUID) -> MoneyRequestRead:
    """The payer refuses an open request."""
    record = await _open_for(session, request_id, payer_id, MoneyRequestRole.PAYER)
    declined = await repository.close(session, record.id, MoneyRequestStatus.DECLINED)
    await publish(
        session,
        MoneyRequestDeclined(**_data(declined)),
        event_id=_event_id(declined, MoneyRequestDeclined.event_type),
    )
    return read(declined)


async def cancel(
    session: AsyncSession, requester_id: str, request_id: uuid.UUID
) -> MoneyRequestRead:
    """The requester withdraws an open request."""
    record = await _open_for(session, request_id, requester_id, MoneyRequestRole.REQUESTER)
    canceled = await repository.close(session, record.id, MoneyRequestStatus.CANCELED)
    await publish(
        session,
        MoneyRequestCanceled(**_data(canceled)),
        event_id=_event_id(canceled, MoneyRequestCanceled.event_type),
    )
    return read(canceled)


async def expire_overdue(session: AsyncSession) -> int:
    """Close up to SWEEP_BATCH open requests past their expiry; returns how many."""
    expired = await repository.expire_due(session, SWEEP_BATCH)
    for record in expired:
        await publish(
            session,
            MoneyRequestExpired(**_data(record)),
            event_id=_event_id(record, MoneyRequestExpired.event_type),
        )
    return len(expired)


async def address_payer(session: AsyncSession, user_id: str, email: str) -> int:
    """A newly registered email receives the open requests that waited for it."""
    waiting = await repository.address_waiting(session, accounts.normalise_email(email), user_id)
    for record in waiting:
        await publish(
            session,
            MoneyRequestReceived(**_data(record)),
            event_id=_event_id(record, MoneyRequestReceived.event_type),
        )
    return len(waiting)
