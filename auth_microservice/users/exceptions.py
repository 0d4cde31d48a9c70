"""Problems of registration, confirmation and the user list."""

from __future__ import annotations

from typing import Any

from micropay_common.errors import BadRequest, Conflict, ServiceUnavailable, TooManyRequests


class EmailTaken(Conflict):
    """409: an account with this email exists."""

    type = "email_taken"
    title = "Email already registered"

    def __init__(self, **extra: Any) -> None:
        super().__init__("An account with this email address already exists.", **extra)


class WeakPassword(BadRequest):
    """400: the password breaks the user pool's password policy (`rule` names which rule)."""

    type = "weak_password"
    title = "Password too weak"


class InvalidConfirmationCode(BadRequest):
    """400: the confirmation code is wrong (or the account cannot be confirmed with it)."""

    type = "invalid_confirmation_code"
    title = "Invalid confirmation code"


class ExpiredConfirmationCode(BadRequest):
    """400: the confirmation code has expired; ask for a new one."""

    type = "expired_confirmation_code"
    title = "Expired confirmation code"


class InvalidRegistration(BadRequest):
    """400: Cognito refused the registration's parameters."""

    type = "invalid_registration"
    title = "Invalid registration"


class RegistrationNotCompleted(ServiceUnavailable):
    """503: the account could not be stored; nothing was kept, so a retry is safe."""

    def __init__(self, **extra: Any) -> None:
        super().__init__(
            "The registration could not be completed and was undone; retry shortly.",
            retry_after=2,
            **extra,
        )


class SignupRateLimited(TooManyRequests):
    """429 `rate_limited` (the gateway's type): too many sign-up steps from an address or email."""
