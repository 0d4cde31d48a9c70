"""Users of the Cognito pool as tests see them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CognitoUser:
    """A confirmed pool user and a fresh set of tokens."""

    username: str
    password: str
    sub: str
    access_token: str
    id_token: str
    refresh_token: str
