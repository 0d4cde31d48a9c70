"""Request and response bodies of sign-in, refresh and the caller's identity."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, Field

from auth_microservice.users.schemas import EmailField


class LoginCreate(EmailField):
    """POST /auth/login."""

    password: str = Field(min_length=1, max_length=256)


class TokenRead(BaseModel):
    """Tokens of a new sign-in."""

    access_token: str
    id_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105
    expires_in: int = Field(description="Seconds until the access token expires.")


class SessionRead(BaseModel):
    """A browser sign-in: the access and id tokens; the refresh token is in a cookie."""

    access_token: str
    id_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105
    expires_in: int = Field(description="Seconds until the access token expires.")


class RefreshCreate(BaseModel):
    """POST /auth/refresh."""

    refresh_token: str = Field(min_length=1, max_length=8192)


class RefreshRead(BaseModel):
    """New access and id tokens (a new refresh token only when Cognito rotates it)."""

    access_token: str
    id_token: str
    refresh_token: str | None = None
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105
    expires_in: int


class MeRead(BaseModel):
    """The caller."""

    user_id: uuid.UUID
    email: str
    groups: list[str]
