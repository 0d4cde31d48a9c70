"""Request and response bodies of registration, confirmation and the user list."""

from __future__ import annotations

import uuid
from datetime import datetime

from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, ConfigDict, Field, field_validator

from micropay_common.pagination import Page


def normalise_email(value: str) -> str:
    """Trim and lower-case an address, then check it is a deliverable-looking ASCII address."""
    candidate = value.strip().lower()
    try:
        # ASCII only: the address travels in HTTP headers (X-User-Email) and as the username.
        validated = validate_email(candidate, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    return validated.normalized.lower()


class EmailField(BaseModel):
    """A body carrying an email address, normalised (trimmed, lower-cased) and validated."""

    email: str = Field(max_length=254, examples=["alice@example.com"])

    @field_validator("email")
    @classmethod
    def _normalise(cls, value: str) -> str:
        return normalise_email(value)


class UserCreate(EmailField):
    """POST /auth/register."""

    password: str = Field(min_length=1, max_length=256)


class ConfirmationCreate(EmailField):
    """POST /auth/confirm."""

    code: str = Field(min_length=1, max_length=64)


class ConfirmationResend(EmailField):
    """POST /auth/resend-confirmation."""


class UserRead(BaseModel):
    """A registered user."""

    model_config = ConfigDict(from_attributes=True)

    user_id: uuid.UUID
    email: str
    confirmed: bool
    created_at: datetime


class RegistrationRead(BaseModel):
    """The answer to a registration."""

    user_id: uuid.UUID
    email: str
    confirmed: bool = Field(description="False until the emailed code is entered at /auth/confirm.")


class ConfirmationRead(BaseModel):
    """The answer to a confirmation."""

    email: str
    confirmed: bool


class ResendRead(BaseModel):
    """The answer to a resend request (the same whether or not the account exists)."""

    detail: str


class UserPage(Page[UserRead]):
    """A page of users, newest first."""
