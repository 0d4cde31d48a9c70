"""The registry of MicroPay's services: the one place that names each service's parts.

Everything that needs to know which services exist, their schema, database role, port, public
prefix or URL variable reads it from here: the settings, the migrations, the local launcher,
the compose bootstrap job, the tests and the deployment tests.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType


class ServiceName(StrEnum):
    """The short name of a service: event producers and consumers, settings, logs."""

    AUTH = "auth"
    PAYMENT = "payment"
    TRANSACTIONS = "transactions"
    NOTIFICATIONS = "notifications"


@dataclass(frozen=True)
class Service:
    """One service: its code, its slice of the database and where it listens."""

    name: ServiceName
    package: str
    """The importable package (the top-level folder)."""
    schema: str
    """The PostgreSQL schema it owns; no other service reads it."""
    role: str
    """The PostgreSQL role it connects as, granted only its own schema."""
    port: int
    """Its port, locally and in every deployment."""
    prefix: str
    """Its public path prefix at the gateway."""

    @property
    def app(self) -> str:
        """The ASGI application as uvicorn names it."""
        return f"{self.package}.main:app"

    @property
    def url_variable(self) -> str:
        """The environment variable other services read its base URL from."""
        return f"{self.name.upper()}_URL"

    @property
    def password_variable(self) -> str:
        """The variable that carries its database role's password into set-up jobs."""
        return f"{self.name.upper()}_DB_PASSWORD"

    @property
    def local_url(self) -> str:
        """Its base URL on this machine with the default ports."""
        return f"http://127.0.0.1:{self.port}"


SERVICES: Mapping[ServiceName, Service] = MappingProxyType(
    {
        service.name: service
        for service in (
            Service(ServiceName.AUTH, "auth_microservice", "auth", "auth_service", 8001, "/auth"),
            Service(
                ServiceName.PAYMENT,
                "payment_microservice",
                "payments",
                "payment_service",
                8002,
                "/payments",
            ),
            Service(
                ServiceName.TRANSACTIONS,
                "transactions_microservice",
                "transactions",
                "transactions_service",
                8003,
                "/transactions",
            ),
            Service(
                ServiceName.NOTIFICATIONS,
                "notifications_microservice",
                "notifications",
                "notifications_service",
                8004,
                "/notifications",
            ),
        )
    }
)


def service(name: str) -> Service:
    """The registered service called `name`, or a KeyError naming the known ones."""
    try:
        return SERVICES[ServiceName(name)]
    except ValueError:
        known = ", ".join(SERVICES)
        raise KeyError(f"{name!r} is not a MicroPay service; known: {known}") from None


def all_services() -> Iterator[Service]:
    """Every service, in the registry's order (auth, payment, transactions, notifications)."""
    return iter(SERVICES.values())
