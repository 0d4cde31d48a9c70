"""Cognito access-token verification (RS256 against the pool's JWKS) as FastAPI dependencies."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import httpx
import jwt
from fastapi import Depends, Request
from jwt.algorithms import RSAAlgorithm
from prometheus_client import CollectorRegistry, Counter

from micropay_common.errors import Forbidden, ServiceUnavailable, Unauthorized
from micropay_common.revocation import DenySet
from micropay_common.services import SERVICES, ServiceName
from micropay_common.settings import ServiceSettings
from micropay_common.state import AppState

ALLOWED_ALGORITHMS = ["RS256"]

SERVICES_GROUP = "services"
"""Every service account's group: what marks a caller as a service at all."""
ADMINS_GROUP = "admins"
"""MicroPay's operators."""
SERVICE_GROUP_PREFIX = "service-"
"""A service account is also the only member of the group of its own service."""

security_logger = logging.getLogger("micropay.security")
"""Security events: every refused caller, one WARNING record each."""

SECURITY_REFUSALS = "micropay_security_refusals"
"""The counter of refused callers, by route and reason, on each app's /metrics."""


def service_group(name: ServiceName) -> str:
    """The Cognito group of one service's account (`service-payment`, ...)."""
    return f"{SERVICE_GROUP_PREFIX}{name}"


SERVICE_BY_GROUP: dict[str, ServiceName] = {service_group(name): name for name in SERVICES}
"""The service each per-service group stands for."""


@dataclass(frozen=True)
class AuthenticatedUser:
    """The caller as the verified access token describes it."""

    id: str
    username: str
    groups: frozenset[str]
    token: str = field(repr=False)
    claims: dict[str, Any] = field(repr=False, hash=False, compare=False)

    @property
    def email(self) -> str:
        """Users sign up with their email as the Cognito username."""
        return self.username

    @property
    def origin_jti(self) -> str | None:
        """Identifies the sign-in session the token belongs to (shared by refreshed tokens)."""
        value = self.claims.get("origin_jti")
        return str(value) if value else None

    @property
    def expires_at(self) -> int:
        """Expiry of the token as a Unix timestamp."""
        return int(self.claims["exp"])

    def in_group(self, group: str) -> bool:
        """Whether the caller belongs to a Cognito group."""
        return group in self.groups

    @property
    def service(self) -> ServiceName | None:
        """The service whose account this is: the one `service-<name>` group, else None.

        Only group membership counts (an operator grants it; a username can be chosen at
        sign-up), and an account in two such groups or outside `services` stands for none.
        """
        if SERVICES_GROUP not in self.groups:
            return None
        named = [SERVICE_BY_GROUP[group] for group in self.groups if group in SERVICE_BY_GROUP]
        return named[0] if len(named) == 1 else None


class JwksCache:
    """The pool's signing keys by `kid`; refetched on an unknown `kid` at most once per cooldown."""

    def __init__(
        self,
        jwks_url: str,
        cooldown_seconds: float,
        timeout: float = 5.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.jwks_url = jwks_url
        self.cooldown_seconds = cooldown_seconds
        self._clock = clock
        self._keys: dict[str, Any] = {}
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()
        self._http = httpx.AsyncClient(timeout=timeout)
        self.fetch_count = 0

    async def get(self, kid: str) -> Any | None:
        """The public key for `kid`, fetching the JWKS when it is not known yet."""
        key = self._keys.get(kid)
        if key is not None:
            return key
        async with self._lock:
            key = self._keys.get(kid)
            if key is not None:
                return key
            if self._fetched_at is not None and (
                self._clock() - self._fetched_at < self.cooldown_seconds
            ):
                return None
            await self._refresh()
            return self._keys.get(kid)

    async def _refresh(self) -> None:
        try:
            response = await self._http.get(self.jwks_url)
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise ServiceUnavailable(
                "The identity provider's signing keys cannot be fetched.", retry_after=5
            ) from exc
        finally:
            self._fetched_at = self._clock()
        self.fetch_count += 1
        keys: dict[str, Any] = {}
        for jwk in document.get("keys", []):
            if jwk.get("kty") == "RSA" and jwk.get("kid") and jwk.get("alg", "RS256") == "RS256":
                keys[jwk["kid"]] = RSAAlgorithm.from_jwk(jwk)
        self._keys = keys

    async def aclose(self) -> None:
        """Release the HTTP connection pool."""
        await self._http.aclose()


class TokenVerifier:
    """Checks signature, algorithm, issuer, token_use, client_id and expiry of access tokens.

    Tokens that passed are kept until they expire (bounded, least recently used out), so a
    client's repeated requests skip the RSA check; the key is the whole token, so only the
    very same signed bytes hit. Every answer, cached or not, then goes through the replica's
    deny-set of revoked sign-ins (`micropay_common.revocation`), so a logout is refused even
    for a token verified before it.
    """

    def __init__(
        self,
        *,
        issuer: str,
        client_id: str,
        jwks: JwksCache,
        leeway: int = 5,
        max_cached_tokens: int = 10_000,
        deny_set: DenySet | None = None,
    ) -> None:
        self.issuer = issuer
        self.client_id = client_id
        self.jwks = jwks
        self.leeway = leeway
        self.max_cached_tokens = max_cached_tokens
        self._verified: OrderedDict[str, AuthenticatedUser] = OrderedDict()
        self.deny_set = deny_set
        """Revoked sign-ins (none checked without one: tools and tests of the signature only)."""

    @classmethod
    def from_settings(
        cls, settings: ServiceSettings, deny_set: DenySet | None = None
    ) -> TokenVerifier:
        """A verifier for the configured user pool and app client."""
        return cls(
            issuer=settings.cognito_issuer,
            client_id=settings.cognito_client_id,
            jwks=JwksCache(settings.cognito_jwks_url, settings.jwks_refetch_cooldown_seconds),
            deny_set=deny_set,
        )

    async def verify(self, token: str) -> AuthenticatedUser:
        """Return the user a valid, unrevoked access token stands for, or raise Unauthorized."""
        user = await self.authenticate(token)
        if self.deny_set is not None and not self.deny_set.admits(user):
            await self.deny_set.recheck(user)
        return user

    async def authenticate(self, token: str) -> AuthenticatedUser:
        """The user a validly signed, unexpired access token stands for; revocation unchecked."""
        user = self._verified.get(token)
        if user is not None and user.expires_at > time.time():
            self._verified.move_to_end(token)
            return user
        user = await self._verify_signature_and_claims(token)
        self._verified[token] = user
        if len(self._verified) > self.max_cached_tokens:
            self._verified.popitem(last=False)
        return user

    async def _verify_signature_and_claims(self, token: str) -> AuthenticatedUser:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthorized("The access token is malformed.") from exc
        if header.get("alg") not in ALLOWED_ALGORITHMS:
            raise Unauthorized("The access token uses an algorithm that is not accepted.")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthorized("The access token names no signing key.")
        key = await self.jwks.get(kid)
        if key is None:
            raise Unauthorized("The access token is signed with an unknown key.")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=ALLOWED_ALGORITHMS,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iss", "sub", "token_use"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("The access token has expired.") from exc
        except jwt.InvalidIssuerError as exc:
            raise Unauthorized("The access token was issued by another identity provider.") from exc
        except jwt.PyJWTError as exc:
            raise Unauthorized("The access token is not valid.") from exc
        if claims.get("token_use") != "access":
            raise Unauthorized("An access token is required.")
        if claims.get("client_id") != self.client_id:
            raise Unauthorized("The access token was issued to another client.")
        groups = claims.get("cognito:groups") or []
        return AuthenticatedUser(
            id=str(claims["sub"]),
            username=str(claims.get("username") or claims["sub"]),
            groups=frozenset(str(group) for group in groups),
            token=token,
            claims=claims,
        )

    async def aclose(self) -> None:
        """Release resources."""
        await self.jwks.aclose()


def bearer_token(request: Request) -> str:
    """The token of an `Authorization: Bearer …` header, or raise Unauthorized."""
    header = request.headers.get("authorization")
    if not header:
        raise Unauthorized("An Authorization: Bearer access token is required.")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("The Authorization header must be 'Bearer <access token>'.")
    return token.strip()


async def token_verifier(request: Request) -> TokenVerifier:
    """The app's verifier of access tokens."""
    return AppState.of(request.app).token_verifier


TokenVerifierDep = Annotated[TokenVerifier, Depends(token_verifier)]


async def current_user(request: Request, verifier: TokenVerifierDep) -> AuthenticatedUser:
    """Verify the request's bearer token with the app's verifier."""
    return await verifier.verify(bearer_token(request))


CurrentUser = Annotated[AuthenticatedUser, Depends(current_user)]


def require_group(group: str) -> Callable[..., Awaitable[AuthenticatedUser]]:
    """A dependency that admits only members of `group` (403 for others)."""

    async def dependency(user: CurrentUser) -> AuthenticatedUser:
        if not user.in_group(group):
            raise Forbidden(f"This endpoint requires membership of the '{group}' group.")
        return user

    dependency.__name__ = f"require_group_{group}"
    return dependency


class CallerNotAllowed(Forbidden):
    """403: an authenticated caller that this route (or this event) does not accept."""

    type = "caller_not_allowed"
    title = "Caller not allowed"


def security_refusals_counter(registry: CollectorRegistry) -> Counter:
    """The counter of refused callers in `registry` (one per app, made with the app)."""
    return Counter(
        SECURITY_REFUSALS,
        "Callers refused by an internal route, by route and reason.",
        ["route", "reason"],
        registry=registry,
    )


def route_of(request: Request) -> str:
    """The route's path template (bounded, unlike the path with its ids)."""
    route = request.scope.get("route")
    return str(getattr(route, "path", request.url.path))


def refuse_caller(
    request: Request, caller: AuthenticatedUser, reason: str, detail: str, **context: Any
) -> CallerNotAllowed:
    """Log and count a refused caller; the CallerNotAllowed to raise."""
    route = route_of(request)
    security_logger.warning(
        "caller %s refused on %s: %s",
        caller.username,
        route,
        reason,
        extra={
            "caller": caller.username,
            "caller_service": caller.service,
            "route": route,
            "reason": reason,
            **context,
        },
    )
    AppState.of(request.app).security_refusals.labels(route=route, reason=reason).inc()
    return CallerNotAllowed(detail, reason=reason)


def require_callers(
    *services: ServiceName, admins: bool = False
) -> Callable[..., Awaitable[AuthenticatedUser]]:
    """A dependency admitting the accounts of `services` (and operators if `admins`); 403 else.

    An internal router names its callers once: `dependencies=[Depends(require_callers(...))]`.
    """
    accepted = frozenset(services)
    names = [*(str(name) for name in sorted(accepted)), *(["admins"] if admins else [])]

    async def dependency(request: Request, user: CurrentUser) -> AuthenticatedUser:
        if user.service in accepted or (admins and user.in_group(ADMINS_GROUP)):
            return user
        raise refuse_caller(
            request,
            user,
            "caller_not_accepted",
            f"This endpoint accepts only: {', '.join(names)}.",
        )

    dependency.__name__ = f"require_callers_{'_'.join(names)}"
    return dependency


SERVICE_CALLER_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "No valid service token"},
    403: {"description": "`caller_not_allowed`: the caller is not an account this route accepts"},
}
"""What an internal router answers a caller it refuses, for its OpenAPI `responses`."""
ServiceCaller = Annotated[AuthenticatedUser, Depends(require_callers(*SERVICES))]
"""Any service's own account, for a route that every service may call and that needs its name."""
AdminUser = Annotated[AuthenticatedUser, Depends(require_group(ADMINS_GROUP))]
