"""The rules of a transfer: one ledger transaction and one event, or nothing."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from micropay_common.db import Database, Direct, Refused
from micropay_common.errors import ProblemError
from micropay_common.events import EventEnvelope, TransferCompleted
from micropay_common.idempotency import Answer, StoredResponse, claim_parameters, claimed
from micropay_common.idempotency.repository import Claim, store_response
from micropay_common.idempotency.stored_responses import json_ready
from transactions_microservice.accounts import service as accounts
from transactions_microservice.invitations import service as invitations
from transactions_microservice.ledger.exceptions import InsufficientFunds, WalletHasDebt
from transactions_microservice.limits import service as limits
from transactions_microservice.settings import TransactionsSettings
from transactions_microservice.transfers import repository
from transactions_microservice.transfers.exceptions import (
    RECIPIENT_UNAVAILABLE,
    RecipientUnavailable,
    TransferToSelf,
)
from transactions_microservice.transfers.schemas import TransferCreate, TransferRead


async def create_transfer(
    db: Direct | Database,
    sender_id: str,
    sender_email: str,
    request: TransferCreate,
    *,
    settings: TransactionsSettings,
    claim: Claim | None = None,
) -> TransferRead | StoredResponse:
    """Move `amount` from the sender's wallet to the recipient's and announce it.

    The sender's funds and limits are weighed before the recipient is looked at, and every
    recipient that cannot receive gets the same refusal after the same work (the one lookup),
    so neither the answer nor its timing tells whether an email has an account. A debt, funds
    and the daily limit are weighed again under the posting's locks, exactly. All of it, with
    the Idempotency-Key's `claim` and the stored answer, is one statement
    (`transactions.transfer`); on `Direct` (or a connection in autocommit) it is its own
    transaction, in a session
    it joins the session's. With a claim, what the key already answered is returned instead.
    """
    to_email = accounts.normalise_email(request.to_email)
    own_email = accounts.normalise_email(sender_email)
    if to_email == own_email:
        raise TransferToSelf("You cannot send money to yourself.")
    limits.check_transfer_amount(settings, request.amount, request.currency)
    day = limits.Day.of()
    transfer_id = uuid.uuid4()
    # Who the recipient is and the sender's recorded email are known only in the statement:
    # it fills them in (an email the ledger has recorded wins over the token's).
    event = TransferCompleted(
        transfer_id=str(transfer_id),
        from_user_id=sender_id,
        from_email=own_email,
        to_user_id="",
        to_email=to_email,
        amount=request.amount,
        currency=request.currency,
        description=request.description,
    )
    call = repository.TransferCall(
        transfer_id=transfer_id,
        sender_id=sender_id,
        sender_email=own_email,
        to_email=to_email,
        amount=request.amount,
        currency=request.currency,
        description=request.description,
        daily_limit=settings.transfer_daily_limits.get(request.currency),
        day_start=day.start,
        response={
            "id": str(transfer_id),
            "amount": request.amount,
            "currency": request.currency,
            "to_email": to_email,
            "description": request.description,
        },
        event=EventEnvelope.of(event, event_id=transfer_id).model_dump(mode="json"),
        consumers=list(event.consumers),
    )
    try:
        # The key's owner is the sender: the function takes it from `sender_id`.
        outcome = await repository.transfer(
            db, call, None if claim is None else claim_parameters(claim)
        )
    except Refused as refused:
        raise _problem(refused, request, settings, day) from None
    stored = claimed(outcome)
    if stored is not None:
        return stored
    return TransferRead.model_validate(outcome["body"])


async def send_or_invite(
    sessions: async_sessionmaker[AsyncSession],
    sender_id: str,
    sender_email: str,
    request: TransferCreate,
    *,
    settings: TransactionsSettings,
    claim: Claim,
) -> TransferRead | Answer | StoredResponse:
    """A transfer with `invite`: to an email with an account, the transfer itself (201); to one
    without, the amount held and the address invited (202, a pending transfer).

    One transaction holds the Idempotency-Key's claim, the choice and its effect, so a retry
    replays the first answer whichever it was. The sender's per-transaction limit is weighed
    first either way; a held amount is weighed against the wallet's debt and available funds.
    """
    async with sessions() as session, session.begin():
        outcome = await repository.claim_key(session, sender_id, claim_parameters(claim))
        stored = claimed(outcome)
        if stored is not None:
            return stored
        record_id = int(outcome["id"])
        to_email = accounts.normalise_email(request.to_email)
        own_email = accounts.normalise_email(sender_email)
        if to_email == own_email:
            raise TransferToSelf("You cannot send money to yourself.")
        limits.check_transfer_amount(settings, request.amount, request.currency)
        if await invitations.has_account(session, to_email):
            sent = await create_transfer(
                session, sender_id, sender_email, request, settings=settings
            )
            await store_response(session, record_id, 201, json_ready(sent), "application/json")
            return sent
        try:
            invitation = await invitations.invite(
                session,
                sender_id=sender_id,
                sender_email=own_email,
                to_email=to_email,
                amount=request.amount,
                currency=request.currency,
                description=request.description,
                ttl_seconds=settings.invitation_ttl_seconds,
                daily_limit=settings.transfer_daily_limits.get(request.currency),
            )
        except WalletHasDebt as owing:
            raise _debt(int(owing.extra["owed"]), request.currency) from None
        except InsufficientFunds as short:
            raise InsufficientFunds(
                "The wallet's available balance does not cover this amount.",
                available=int(short.extra["available"]),
                currency=request.currency,
            ) from None
        await store_response(session, record_id, 202, json_ready(invitation), "application/json")
        return Answer(202, invitation)


def _problem(
    refused: Refused, request: TransferCreate, settings: TransactionsSettings, day: limits.Day
) -> ProblemError:
    """The problem a refusal of `transactions.transfer` is answered with."""
    fields = refused.fields
    currency = request.currency
    if refused.kind == "wallet_has_debt":
        return _debt(int(fields["owed"]), currency)
    if refused.kind == "no_wallet":
        return InsufficientFunds(f"You have no {currency} wallet.", available=0, currency=currency)
    if refused.kind == "insufficient_funds":
        return InsufficientFunds(
            "The wallet's available balance does not cover this amount.",
            available=int(fields["available"]),
            pending=int(fields["pending"]),
            currency=currency,
        )
    if refused.kind == "limit_exceeded":
        return limits.daily_limit_exceeded(
            limit=int(fields["limit"]),
            remaining=int(fields["remaining"]),
            currency=currency,
            day=day,
        )
    if refused.kind == "recipient_unavailable":
        return RecipientUnavailable(RECIPIENT_UNAVAILABLE)
    if refused.kind == "transfer_to_self":
        return TransferToSelf("You cannot send money to yourself.")
    raise RuntimeError(f"transactions.transfer refused with an unknown kind {refused.kind!r}")


def _debt(owed: int, currency: str) -> WalletHasDebt:
    """The refusal of a transfer out of a wallet whose user owes in its currency."""
    return WalletHasDebt(
        "You owe money in this currency; money coming in pays it first, and nothing can be "
        "sent until it is paid.",
        owed=owed,
        currency=currency,
    )
