"""The test session's own database."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from stack.postgres import PostgresServer


@dataclass
class TestDatabase:
    """A freshly created database migrated to the latest revision (`make migrate`)."""

    __test__ = False  # a fixture value, not a test class

    server: PostgresServer
    name: str
    service_urls: dict[str, str]

    @property
    def admin_url(self) -> str:
        """Superuser URL of the test database."""
        return self.server.url_for(self.name)


def psql() -> str:
    """The psql binary: the one pgserver ships (the embedded server's version), else PATH's."""
    import pgserver

    bundled = Path(pgserver.__file__).parent / "pginstall" / "bin" / "psql"
    if bundled.exists():
        return str(bundled)
    found = shutil.which("psql")
    if found is None:
        raise RuntimeError("no psql: neither pgserver's nor one on PATH")
    return found
