"""Access tokens for this service's own Cognito account, used on service-to-service calls."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from micropay_common.cognito import cognito_client, secret_hash
from micropay_common.errors import ServiceUnavailable
from micropay_common.settings import ServiceSettings

logger = logging.getLogger("micropay.service_auth")


@dataclass
class _CachedToken:
    access_token: str
    refresh_token: str | None
    expires_at: float


class ServiceTokenProvider:
    """Logs in once as the service account, caches the token and renews it before expiry."""

    def __init__(
        self,
        *,
        username: str,
        password: str,
        client_id: str,
        client_secret: str,
        user_pool_id: str,
        cognito: Any,
        refresh_margin_seconds: float = 300.0,
    ) -> None:
        self.username = username
        self._password = password
        self.client_id = client_id
        self._client_secret = client_secret
        self.user_pool_id = user_pool_id
        self._cognito = cognito
        self.refresh_margin_seconds = refresh_margin_seconds
        self._cached: _CachedToken | None = None
        self._lock = asyncio.Lock()
        self.login_count = 0

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> ServiceTokenProvider:
        """A provider for the service account named in the settings."""
        return cls(
            username=settings.service_account_username,
            password=settings.service_account_password,
            client_id=settings.cognito_client_id,
            client_secret=settings.cognito_client_secret,
            user_pool_id=settings.cognito_user_pool_id,
            cognito=cognito_client(settings),
            refresh_margin_seconds=settings.service_token_refresh_margin_seconds,
        )

    def _fresh(self) -> bool:
        return self._cached is not None and (
            self._cached.expires_at - time.monotonic() > self.refresh_margin_seconds
        )

    async def token(self) -> str:
        """A valid access token, from the cache when it has enough life left."""
        if self._fresh():
            assert self._cached is not None
            return self._cached.access_token
        async with self._lock:
            if not self._fresh():
                self._cached = await self._renew()
            assert self._cached is not None
            return self._cached.access_token

    def invalidate(self) -> None:
        """Forget the cached token (after a downstream 401), so the next call logs in again."""
        self._cached = None

    async def _renew(self) -> _CachedToken:
        previous = self._cached
        if previous is not None and previous.refresh_token:
            try:
                return await self._authenticate(
                    "REFRESH_TOKEN_AUTH", {"REFRESH_TOKEN": previous.refresh_token}, previous
                )
            except ServiceUnavailable:
                logger.info("service token refresh failed; logging in again")
        return await self._authenticate("ADMIN_USER_PASSWORD_AUTH", {"PASSWORD": self._password})

    async def _authenticate(
        self, flow: str, parameters: dict[str, str], previous: _CachedToken | None = None
    ) -> _CachedToken:
        auth_parameters = {
            "USERNAME": self.username,
            "SECRET_HASH": secret_hash(self.username, self.client_id, self._client_secret),
            **parameters,
        }
        started = time.monotonic()
        try:
            response = await asyncio.to_thread(
                self._cognito.admin_initiate_auth,
                UserPoolId=self.user_pool_id,
                ClientId=self.client_id,
                AuthFlow=flow,
                AuthParameters=auth_parameters,
            )
        except (ClientError, BotoCoreError) as exc:
            logger.warning("service account %s: %s failed: %s", self.username, flow, exc)
            raise ServiceUnavailable(
                "This service cannot authenticate to its peers right now.", retry_after=5
            ) from exc
        result = response["AuthenticationResult"]
        self.login_count += 1
        refresh_token = result.get("RefreshToken")
        if refresh_token is None and previous is not None:
            refresh_token = previous.refresh_token
        return _CachedToken(
            access_token=result["AccessToken"],
            refresh_token=refresh_token,
            expires_at=started + float(result.get("ExpiresIn", 3600)),
        )
