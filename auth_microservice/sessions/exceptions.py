"""Problems of signing in, refreshing, signing out and checking tokens."""

from __future__ import annotations

from typing import Any

from micropay_common.errors import Forbidden, TooManyRequests, Unauthorized


class InvalidCredentials(Unauthorized):
    """401: wrong password or unknown email, answered alike so accounts cannot be probed."""

    type = "invalid_credentials"
    title = "Invalid credentials"

    def __init__(self, **extra: Any) -> None:
        super().__init__("The email or password is incorrect.", **extra)


class EmailNotConfirmed(Forbidden):
    """403: the password is right but the email address is not confirmed yet."""

    type = "email_not_confirmed"
    title = "Email not confirmed"

    def __init__(self, **extra: Any) -> None:
        super().__init__(
            "Confirm your email address first: enter the code sent to it at "
            "POST /auth/confirm, or ask for a new one at POST /auth/resend-confirmation.",
            **extra,
        )


class LoginThrottled(TooManyRequests):
    """429: too many failed sign-ins for this email or from this address lately."""

    type = "too_many_login_attempts"
    title = "Too many login attempts"


class InvalidRefreshToken(Unauthorized):
    """401: the refresh token is unknown, expired or revoked (signed out)."""

    type = "invalid_refresh_token"
    title = "Invalid refresh token"

    def __init__(self, **extra: Any) -> None:
        super().__init__("The refresh token is not valid; sign in again.", **extra)


class CsrfRejected(Forbidden):
    """403: a cookie-authenticated request without proof that this site's app made it."""

    type = "csrf_rejected"
    title = "Cross-site request refused"
