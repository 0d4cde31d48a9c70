"""Registration, confirmation and the user list: Cognito first, the mirror row with its event."""

from __future__ import annotations

import asyncio
import logging
import uuid

from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from auth_microservice.exceptions import IdentityProviderUnavailable
from auth_microservice.identity import CognitoRejected, IdentityProvider
from auth_microservice.models import SCHEMA, User
from auth_microservice.users import repository
from auth_microservice.users.exceptions import (
    EmailTaken,
    ExpiredConfirmationCode,
    InvalidConfirmationCode,
    InvalidRegistration,
    RegistrationNotCompleted,
    WeakPassword,
)
from micropay_common.errors import ProblemError
from micropay_common.events import UserRegistered
from micropay_common.locks import lock_for_transaction
from micropay_common.outbox import publish, wait_attempted
from micropay_common.pagination import InvalidCursor
from micropay_common.services import ServiceName
from micropay_common.wakeup import Listener

logger = logging.getLogger("micropay.auth.users")

REGISTRATION_NEWS_WAIT_SECONDS = 2.0
"""How long a completed registration waits for its news to be offered to the transactions
service before answering anyway (the event still arrives, later)."""


async def check_password(identity: IdentityProvider, password: str) -> None:
    """Raise WeakPassword naming the first pool rule the password breaks."""
    policy = await identity.password_policy()
    if policy is None:
        return
    broken = policy.violation(password)
    if broken is not None:
        rule, needs = broken
        raise WeakPassword(f"The password must contain {needs}.", rule=rule)


async def add_user(
    session: AsyncSession, user_id: uuid.UUID, email: str, *, confirmed: bool
) -> User:
    """Insert the mirror row; a confirmed one publishes `user.registered` in that transaction."""
    user = await repository.add(session, user_id, email, confirmed=confirmed)
    if confirmed:
        await _publish_registered(session, user_id, email)
    return user


async def mark_confirmed(session: AsyncSession, email: str) -> uuid.UUID | None:
    """Note the confirmation; the first one publishes `user.registered` (and gives the user's id),
    later ones nothing."""
    # The row lock of the UPDATE serialises concurrent confirmations: one of them sees the
    # row unconfirmed, so the wallet and the transfer address follow a proven email, once.
    user_id = await repository.mark_confirmed(session, email)
    if user_id is not None:
        await _publish_registered(session, user_id, email)
    return user_id


async def _publish_registered(session: AsyncSession, user_id: uuid.UUID, email: str) -> None:
    # One registration per user: its id names the event, so the registration's answer can
    # wait for this event (`wait_until_known`) knowing only the user.
    await publish(session, UserRegistered(user_id=str(user_id), email=email), event_id=user_id)
    await session.flush()


async def wait_until_known(
    listener: Listener, sessionmaker: async_sessionmaker[AsyncSession], user_id: uuid.UUID
) -> bool:
    """After the commit of a completed registration: wait, bounded, until the transactions
    service has been offered its `user.registered` (so a transfer to the new user finds them)."""
    offered = await wait_attempted(
        listener,
        sessionmaker,
        SCHEMA,
        user_id,
        ServiceName.TRANSACTIONS,
        timeout_seconds=REGISTRATION_NEWS_WAIT_SECONDS,
    )
    if not offered:
        logger.info("user.registered not relayed within %gs", REGISTRATION_NEWS_WAIT_SECONDS)
    return offered


async def ensure_confirmed(
    session: AsyncSession, identity: IdentityProvider, user_id: uuid.UUID, email: str
) -> bool:
    """Whether the user has confirmed their email; a mirror that lags Cognito catches up."""
    user = await repository.find_by_id(session, user_id)
    if user is not None and user.confirmed_at is not None:
        return True
    # Rare path (not confirmed here yet, or no row): Cognito's own status decides.
    if await identity.user_status(email) == "UNCONFIRMED":
        return False
    if user is None:
        # A Cognito user whose registration lost its row (undo failed): complete it now.
        logger.warning("user %s had no mirror row; created at sign-in", user_id)
        await add_user(session, user_id, email, confirmed=True)
    else:
        await mark_confirmed(session, email)
    return True


async def register(
    session: AsyncSession,
    identity: IdentityProvider,
    email: str,
    password: str,
    *,
    auto_confirm: bool,
) -> User:
    """Create the Cognito user and its mirror; on any failure after sign-up, delete it again."""
    await check_password(identity, password)
    # Registrations of one email wait for each other here (across replicas), so the second
    # sees the first one's row and never reaches Cognito.
    await lock_for_transaction(session, f"auth.register:{email}")
    if await repository.find_by_email(session, email) is not None:
        raise EmailTaken()
    try:
        sub = await identity.sign_up(email, password)
    except CognitoRejected as exc:
        raise _sign_up_problem(exc) from exc
    try:
        if auto_confirm:
            await identity.confirm_as_admin(email)
        return await add_user(session, uuid.UUID(sub), email, confirmed=auto_confirm)
    except BaseException as exc:
        await _undo_sign_up(identity, email)
        if isinstance(exc, IntegrityError):
            raise EmailTaken() from exc
        if isinstance(exc, SQLAlchemyError | CognitoRejected):
            logger.warning("registration of a user undone: %r", exc)
            raise RegistrationNotCompleted() from exc
        raise


def _sign_up_problem(exc: CognitoRejected) -> ProblemError:
    if exc.code in ("UsernameExistsException", "AliasExistsException"):
        return EmailTaken()
    if exc.code == "InvalidPasswordException":
        return WeakPassword(
            f"The password does not meet the password policy: {exc.message}", rule="policy"
        )
    if exc.code == "InvalidParameterException":
        return InvalidRegistration(exc.message or "Cognito refused the registration.")
    logger.error("unexpected Cognito error on sign-up: %s", exc)
    return IdentityProviderUnavailable()


async def _undo_sign_up(identity: IdentityProvider, email: str) -> None:
    """Delete the Cognito user of a registration that failed; shielded from cancellation."""
    try:
        await asyncio.shield(identity.delete_user(email))
    except (CognitoRejected, IdentityProviderUnavailable) as exc:
        # The login path heals a user left without a mirror row, so this is logged, not raised.
        logger.error("could not delete the Cognito user of a failed registration: %s", exc)
    else:
        logger.info("Cognito user of a failed registration deleted")


async def confirm(
    session: AsyncSession, identity: IdentityProvider, email: str, code: str
) -> uuid.UUID | None:
    """Confirm an account with the emailed code and note it in the mirror; the user's id when
    this confirmation completed the registration (published `user.registered`)."""
    try:
        await identity.confirm_sign_up(email, code)
    except CognitoRejected as exc:
        if exc.code == "NotAuthorizedException":
            completed = await _confirmed_before(session, identity, email)
            if completed is not None:
                return completed
        if exc.code == "ExpiredCodeException":
            raise ExpiredConfirmationCode(
                "The confirmation code has expired; ask for a new one at "
                "POST /auth/resend-confirmation."
            ) from exc
        if exc.code in (
            "CodeMismatchException",
            "UserNotFoundException",
            "NotAuthorizedException",
            "InvalidParameterException",
        ):
            raise InvalidConfirmationCode(
                "The confirmation code is not valid for this email address."
            ) from exc
        logger.error("unexpected Cognito error on confirmation: %s", exc)
        raise IdentityProviderUnavailable() from exc
    return await mark_confirmed(session, email)


async def _confirmed_before(
    session: AsyncSession, identity: IdentityProvider, email: str
) -> uuid.UUID | None:
    """Complete a confirmation Cognito took but the mirror lost (the retry of a failed one);
    the user's id when it did."""
    user = await repository.find_by_email(session, email)
    # Only a row still awaiting confirmation: a repeat on a recorded one stays a wrong code.
    if user is None or user.confirmed_at is not None:
        return None
    try:
        if await identity.user_status(email) != "CONFIRMED":
            return None
    except CognitoRejected:
        return None
    await mark_confirmed(session, email)
    return user.id


async def resend_confirmation(identity: IdentityProvider, email: str) -> None:
    """Ask Cognito to send the code again; unknown or confirmed accounts are not revealed."""
    try:
        await identity.resend_confirmation_code(email)
    except CognitoRejected as exc:
        logger.info("confirmation code not resent: %s", exc.code)


async def list_users(
    session: AsyncSession, *, limit: int, starting_after: uuid.UUID | None
) -> list[User]:
    """Up to `limit + 1` users after the cursor, newest first (the extra one: more follow)."""
    after = None
    if starting_after is not None:
        after = await repository.find_by_id(session, starting_after)
        if after is None:
            raise InvalidCursor(f"No user {starting_after} to start after.")
    return list(await repository.page(session, limit=limit + 1, after=after))
