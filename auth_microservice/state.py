"""What the auth app holds while it runs, besides every service's shared parts."""

from __future__ import annotations

from auth_microservice.client_ip import ClientAddressResolver
from auth_microservice.identity import IdentityProvider
from auth_microservice.sessions.repository import DenyList
from auth_microservice.settings import AuthSettings
from micropay_common.state import ServiceState


class AuthState(ServiceState[AuthSettings]):
    """The shared parts plus Cognito, the client-address resolver and the deny list."""

    identity: IdentityProvider
    client_addresses: ClientAddressResolver
    deny_list: DenyList
