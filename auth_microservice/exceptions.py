"""Problems shared by the auth service's domains."""

from __future__ import annotations

from typing import Any

from micropay_common.errors import ServiceUnavailable

IDENTITY_PROVIDER_RETRY_AFTER = 5


class IdentityProviderUnavailable(ServiceUnavailable):
    """503: Cognito throttled, timed out, failed or could not be reached; not the caller's fault."""

    type = "identity_provider_unavailable"
    title = "Identity provider unavailable"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(
            detail or "The identity provider is not available right now; retry shortly.",
            retry_after=IDENTITY_PROVIDER_RETRY_AFTER,
            **extra,
        )
