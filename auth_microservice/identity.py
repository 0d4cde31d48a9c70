"""AWS Cognito as the auth service uses it: boto3 in worker threads, errors sorted by cause.

Every call runs in `asyncio.to_thread`, so a slow Cognito never blocks the event loop. Failures
that are not the caller's fault (throttling, timeouts, 5xx, connection errors) become
`IdentityProviderUnavailable` (503 with Retry-After); every other Cognito error becomes
`CognitoRejected` with Cognito's error code, for the domain services to translate.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from auth_microservice.exceptions import IdentityProviderUnavailable
from auth_microservice.settings import AuthSettings
from micropay_common.cognito import BOTO_CONFIG, secret_hash

logger = logging.getLogger("micropay.auth.cognito")

# Cognito's own codes for "slow down" and "broken on our side".
UNAVAILABLE_CODES = frozenset(
    {
        "TooManyRequestsException",
        "LimitExceededException",
        "ThrottlingException",
        "InternalErrorException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
# The characters Cognito counts as symbols in a password policy.
COGNITO_SYMBOLS = frozenset("^$*.[]{}()?\"!@#%&/\\,><':;|_~`=+- ")
POLICY_CACHE_SECONDS = 300.0


class CognitoRejected(Exception):
    """Cognito refused the request for a reason the caller can act on (code names it)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Tokens:
    """What a successful sign-in or refresh returns."""

    access_token: str
    id_token: str
    refresh_token: str | None
    expires_in: int


@dataclass(frozen=True)
class PasswordPolicy:
    """The user pool's password rules."""

    minimum_length: int = 8
    require_uppercase: bool = True
    require_lowercase: bool = True
    require_numbers: bool = True
    require_symbols: bool = True

    @classmethod
    def from_cognito(cls, policy: dict[str, Any]) -> PasswordPolicy:
        """Read `Policies.PasswordPolicy` of describe_user_pool (Cognito's defaults if absent)."""
        return cls(
            minimum_length=int(policy.get("MinimumLength", 8)),
            require_uppercase=bool(policy.get("RequireUppercase", True)),
            require_lowercase=bool(policy.get("RequireLowercase", True)),
            require_numbers=bool(policy.get("RequireNumbers", True)),
            require_symbols=bool(policy.get("RequireSymbols", True)),
        )

    def violation(self, password: str) -> tuple[str, str] | None:
        """The first rule `password` breaks, as (rule, explanation), or None."""
        if len(password) < self.minimum_length:
            return "minimum_length", f"at least {self.minimum_length} characters"
        if self.require_uppercase and not re.search(r"[A-Z]", password):
            return "require_uppercase", "an upper-case letter (A-Z)"
        if self.require_lowercase and not re.search(r"[a-z]", password):
            return "require_lowercase", "a lower-case letter (a-z)"
        if self.require_numbers and not re.search(r"[0-9]", password):
            return "require_numbers", "a digit (0-9)"
        if self.require_symbols and not any(char in COGNITO_SYMBOLS for char in password):
            return "require_symbols", "a symbol such as ! @ # $ % ^ & * ( ) - _ = +"
        return None


class IdentityProvider:
    """The user pool's operations the auth service needs, as coroutines."""

    def __init__(self, settings: AuthSettings, client: Any | None = None) -> None:
        self.user_pool_id = settings.cognito_user_pool_id
        self.client_id = settings.cognito_client_id
        self._client_secret = settings.cognito_client_secret
        self._client = client or boto3.client(
            "cognito-idp",
            region_name=settings.aws_region,
            endpoint_url=settings.aws_endpoint_url,
            config=BOTO_CONFIG.merge(
                Config(
                    connect_timeout=settings.cognito_timeout_seconds,
                    read_timeout=settings.cognito_timeout_seconds,
                    retries={"max_attempts": settings.cognito_max_attempts, "mode": "standard"},
                )
            ),
        )
        self._policy: PasswordPolicy | None = None
        self._policy_read_at = 0.0

    @property
    def client(self) -> Any:
        """The boto3 Cognito client (for its metrics)."""
        return self._client

    def _secret_hash(self, username: str) -> str:
        return secret_hash(username, self.client_id, self._client_secret)

    async def _call(self, operation: str, **parameters: Any) -> dict[str, Any]:
        method = getattr(self._client, operation)
        try:
            result: dict[str, Any] = await asyncio.to_thread(method, **parameters)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code") or "")
            message = str(error.get("Message") or "")
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            if code in UNAVAILABLE_CODES or status >= 500 or code.isdigit():
                logger.warning("cognito %s unavailable: %s %s", operation, code, message[:200])
                raise IdentityProviderUnavailable() from exc
            logger.info("cognito %s refused: %s", operation, code)
            raise CognitoRejected(code, message) from exc
        except BotoCoreError as exc:
            # Connection refused, DNS, timeouts, a reset connection: all transient for the caller.
            logger.warning("cognito %s failed: %s", operation, exc)
            raise IdentityProviderUnavailable() from exc
        return result

    async def password_policy(self) -> PasswordPolicy | None:
        """The pool's password policy (cached a few minutes); None when it cannot be read now."""
        now = time.monotonic()
        if self._policy is not None and now - self._policy_read_at < POLICY_CACHE_SECONDS:
            return self._policy
        try:
            described = await self._call("describe_user_pool", UserPoolId=self.user_pool_id)
        except (IdentityProviderUnavailable, CognitoRejected):
            # Cognito checks the password itself on sign-up; the local check only names the rule.
            return self._policy
        policies = described.get("UserPool", {}).get("Policies", {})
        self._policy = PasswordPolicy.from_cognito(policies.get("PasswordPolicy", {}))
        self._policy_read_at = now
        return self._policy

    async def sign_up(self, username: str, password: str) -> str:
        """Create an unconfirmed user with `username` as its email; returns its `sub`."""
        result = await self._call(
            "sign_up",
            ClientId=self.client_id,
            SecretHash=self._secret_hash(username),
            Username=username,
            Password=password,
            UserAttributes=[{"Name": "email", "Value": username}],
        )
        return str(result["UserSub"])

    async def confirm_as_admin(self, username: str) -> None:
        """Confirm a user without a code and mark its email verified (AUTH_AUTO_CONFIRM)."""
        await self._call("admin_confirm_sign_up", UserPoolId=self.user_pool_id, Username=username)
        await self._call(
            "admin_update_user_attributes",
            UserPoolId=self.user_pool_id,
            Username=username,
            UserAttributes=[{"Name": "email_verified", "Value": "true"}],
        )

    async def confirm_sign_up(self, username: str, code: str) -> None:
        """Confirm a user with the code Cognito sent to its email."""
        await self._call(
            "confirm_sign_up",
            ClientId=self.client_id,
            SecretHash=self._secret_hash(username),
            Username=username,
            ConfirmationCode=code,
        )

    async def resend_confirmation_code(self, username: str) -> None:
        """Send the confirmation code again."""
        await self._call(
            "resend_confirmation_code",
            ClientId=self.client_id,
            SecretHash=self._secret_hash(username),
            Username=username,
        )

    async def delete_user(self, username: str) -> None:
        """Delete a user (the compensation of a registration that could not be completed)."""
        await self._call("admin_delete_user", UserPoolId=self.user_pool_id, Username=username)

    async def user_status(self, username: str) -> str:
        """Cognito's UserStatus of a user (UNCONFIRMED, CONFIRMED, …)."""
        result = await self._call("admin_get_user", UserPoolId=self.user_pool_id, Username=username)
        return str(result.get("UserStatus", ""))

    async def password_sign_in(self, username: str, password: str) -> Tokens:
        """ADMIN_USER_PASSWORD_AUTH; a challenge instead of tokens is refused as CognitoRejected."""
        result = await self._call(
            "admin_initiate_auth",
            UserPoolId=self.user_pool_id,
            ClientId=self.client_id,
            AuthFlow="ADMIN_USER_PASSWORD_AUTH",
            AuthParameters={
                "USERNAME": username,
                "PASSWORD": password,
                "SECRET_HASH": self._secret_hash(username),
            },
        )
        return _tokens(result)

    async def refresh(self, username: str, refresh_token: str) -> Tokens:
        """REFRESH_TOKEN_AUTH (SECRET_HASH is computed with the username)."""
        result = await self._call(
            "admin_initiate_auth",
            UserPoolId=self.user_pool_id,
            ClientId=self.client_id,
            AuthFlow="REFRESH_TOKEN_AUTH",
            AuthParameters={
                "REFRESH_TOKEN": refresh_token,
                "SECRET_HASH": self._secret_hash(username),
            },
        )
        return _tokens(result)

    async def global_sign_out(self, username: str) -> None:
        """Revoke every refresh token of the user in Cognito."""
        await self._call(
            "admin_user_global_sign_out", UserPoolId=self.user_pool_id, Username=username
        )


def _tokens(result: dict[str, Any]) -> Tokens:
    authentication = result.get("AuthenticationResult")
    if not authentication:
        challenge = str(result.get("ChallengeName") or "unknown")
        raise CognitoRejected("ChallengeRequired", f"Cognito asks for a {challenge} challenge.")
    return Tokens(
        access_token=str(authentication["AccessToken"]),
        id_token=str(authentication["IdToken"]),
        refresh_token=authentication.get("RefreshToken"),
        expires_in=int(authentication.get("ExpiresIn", 3600)),
    )
