"""What a running service holds, as one typed object per start of the app.

`create_service_app` builds the service's state class in its lifespan (settings, database, token
verifier and its feed of revocations, the LISTEN connection that wakes jobs, service-account
tokens, metrics registry), runs the service's start-up hooks on it (which add its own clients)
and attaches it to the app. Routers reach it through dependencies (`PaymentState.of_request`,
wrapped in `Annotated` aliases in each service's `dependencies.py`), background jobs through
`PaymentState.of(app)`; nothing else reads `app.state`.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar

from fastapi import Request
from starlette.applications import Starlette

from micropay_common.settings import ServiceSettings

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

    from micropay_common.db import Direct
    from micropay_common.metrics import AwsCallMetrics
    from micropay_common.revocation import RevocationFeed
    from micropay_common.security import TokenVerifier
    from micropay_common.service_auth import ServiceTokenProvider
    from micropay_common.wakeup import Listener

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)
T = TypeVar("T")

_ATTRIBUTE = "service"


class ServiceState(Generic[SettingsT]):
    """Every service's shared parts; a service subclasses it to declare what it adds.

    A subclass declares its own members as annotations (`stripe: StripeApi`) and its start-up
    hooks set them, so each is typed wherever it is read.
    """

    def __init__(
        self,
        *,
        settings: SettingsT,
        schema: str,
        engine: AsyncEngine,
        sessionmaker: async_sessionmaker[AsyncSession],
        direct: Direct,
        token_verifier: TokenVerifier,
        revocations: RevocationFeed,
        listener: Listener,
        service_tokens: ServiceTokenProvider,
        metrics_registry: CollectorRegistry,
        security_refusals: Counter,
        aws_calls: AwsCallMetrics,
    ) -> None:
        self.settings = settings
        self.schema = schema
        """The service's PostgreSQL schema (its sessions' search path)."""
        self.engine = engine
        self.sessionmaker = sessionmaker
        self.direct = direct
        """The asyncpg pool the hot paths' single statements run on (`DirectDep`)."""
        self.token_verifier = token_verifier
        self.revocations = revocations
        """Keeps the verifier's deny-set of revoked sign-ins current (LISTEN and reads)."""
        self.listener = listener
        """The process's LISTEN connection: jobs subscribe to the channels that wake them."""
        self.service_tokens = service_tokens
        self.metrics_registry = metrics_registry
        self.security_refusals = security_refusals
        """Callers refused by an internal route (`micropay.security`), by route and reason."""
        self.aws_calls = aws_calls
        """Times the calls of the boto3 clients a service hands it (`watch`)."""

    def attach(self, app: Starlette) -> None:
        """Make this the app's state until it stops (the lifespan calls it)."""
        setattr(app.state, _ATTRIBUTE, self)

    @classmethod
    def of(cls, app: Starlette) -> Self:
        """The state of a started app, as this class (a service's own state class)."""
        state: Any = getattr(app.state, _ATTRIBUTE, None)
        if state is None:
            raise RuntimeError("the app has not started: its state does not exist yet")
        if not isinstance(state, cls):
            raise TypeError(f"the app's state is a {type(state).__name__}, not a {cls.__name__}")
        return state

    @classmethod
    async def of_request(cls, request: Request) -> Self:
        """Dependency: the state of the app serving the request."""
        # Async, as every dependency here: FastAPI runs a plain `def` one in its thread pool.
        return cls.of(request.app)

    @classmethod
    def provide(cls, member: Callable[[Self], T]) -> Callable[[Request], Coroutine[Any, Any, T]]:
        """Dependency giving one member: `Depends(PaymentState.provide(lambda s: s.stripe))`."""

        async def dependency(request: Request) -> T:
            return member(cls.of(request.app))

        return dependency


AppState = ServiceState[ServiceSettings]
"""The shared parts as code common to every service sees them."""
