"""The auth service's tables in the `auth` schema, as PostgreSQL.sql defines them."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Identity, Index, Text, func, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.schema import UniqueConstraint

from micropay_common.constraints import check_in
from micropay_common.services import SERVICES, ServiceName

SCHEMA = SERVICES[ServiceName.AUTH].schema


class Base(DeclarativeBase):
    """Declarative base of the auth models."""


class User(Base):
    """The mirror of one Cognito user (id = `sub`)."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(
            "email = lower(btrim(email)) AND email <> ''", name="users_email_normalised_check"
        ),
        UniqueConstraint("email", name="users_email_key"),
        Index("users_created_idx", text("created_at DESC"), text("id DESC")),
        {"schema": SCHEMA},
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    email: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Session(Base):
    """One sign-in: its refresh token (hashed) and the expiry of its newest access token."""

    __tablename__ = "sessions"
    __table_args__ = (
        UniqueConstraint("refresh_token_hash", name="sessions_refresh_token_hash_key"),
        Index("sessions_user_idx", "user_id", postgresql_where=text("revoked_at IS NULL")),
        Index("sessions_expires_idx", "expires_at"),
        {"schema": SCHEMA},
    )

    origin_jti: Mapped[str] = mapped_column(Text, primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    refresh_token_hash: Mapped[str] = mapped_column(Text, nullable=False)
    access_expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RevokedToken(Base):
    """A deny-listed sign-in: its access tokens are refused until `expires_at`.

    `revoked_at` is when it was (last) revoked; every service's replicas read the rows revoked
    since their previous read (revision 0006 lets their roles read these three columns).
    """

    __tablename__ = "revoked_tokens"
    __table_args__ = (
        Index("revoked_tokens_expires_idx", "expires_at"),
        Index("revoked_tokens_revoked_idx", "revoked_at"),
        {"schema": SCHEMA},
    )

    origin_jti: Mapped[str] = mapped_column(Text, primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    revoked_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class LoginFailure(Base):
    """One failed sign-in, for throttling by email and by client address."""

    __tablename__ = "login_failures"
    __table_args__ = (
        Index("login_failures_email_idx", "email", "failed_at"),
        Index("login_failures_client_ip_idx", "client_ip", "failed_at"),
        Index("login_failures_failed_at_idx", "failed_at"),
        {"schema": SCHEMA},
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    email: Mapped[str] = mapped_column(Text, nullable=False)
    client_ip: Mapped[str] = mapped_column(Text, nullable=False)
    failed_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class SignupAction(StrEnum):
    """The public steps of signing up that are limited per client address (and some per email)."""

    REGISTER = "register"
    CONFIRM = "confirm"
    RESEND = "resend"


class SignupAttempt(Base):
    """One sign-up, confirmation attempt or code resend, counted for the per-address limits."""

    __tablename__ = "signup_attempts"
    __table_args__ = (
        check_in("action", SignupAction, name="signup_attempts_action_check"),
        Index("signup_attempts_client_ip_idx", "action", "client_ip", "attempted_at"),
        Index("signup_attempts_email_idx", "action", "email", "attempted_at"),
        Index("signup_attempts_attempted_at_idx", "attempted_at"),
        {"schema": SCHEMA},
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    action: Mapped[str] = mapped_column(Text, nullable=False)
    client_ip: Mapped[str] = mapped_column(Text, nullable=False)
    email: Mapped[str] = mapped_column(Text, nullable=False)
    attempted_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
