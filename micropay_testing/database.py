"""The test session's own database."""

from __future__ import annotations

from dataclasses import dataclass

from stack.postgres import PostgresServer


@dataclass
class TestDatabase:
    """A freshly created database with PostgreSQL.sql applied."""

    __test__ = False  # a fixture value, not a test class

    server: PostgresServer
    name: str
    service_urls: dict[str, str]

    @property
    def admin_url(self) -> str:
        """Superuser URL of the test database."""
        return self.server.url_for(self.name)
