"""The service roles and what each may reach, from the service registry.

Run by every upgrade (and written into the generated PostgreSQL.sql): each role is created when
missing, may connect, uses its own schema and reads and writes its tables and sequences. Grants
are made only where the role has no privilege on a table or sequence yet, so tables added by
later revisions are covered while a revision that narrows a role's privileges on a table
keeps them narrowed (0002 leaves each role only what its code uses: no UPDATE or DELETE on
ledger rows, docs/migrations.md). Passwords are never set here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from micropay_common.services import SERVICES, Service

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")
TABLE_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"
SEQUENCE_PRIVILEGES = "USAGE, SELECT"


def _identifier(name: str) -> str:
    """`name` when it needs no quoting in SQL; anything else is refused, not quoted."""
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"{name!r} is not a plain lower-case SQL identifier")
    return name


def role_statements(services: Iterable[Service] = SERVICES.values()) -> list[str]:
    """Create each service's role when missing and let it connect to this database."""
    statements = []
    for spec in services:
        role = _identifier(spec.role)
        statements.append(
            f"""DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '{role}') THEN
        CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
    END IF;
EXCEPTION WHEN duplicate_object THEN
    NULL;  -- created meanwhile by a migrator of another database on this server
END
$$"""
        )
        statements.append(
            f"DO $$ BEGIN EXECUTE format('GRANT CONNECT ON DATABASE %I TO {role}', "
            "current_database()); END $$"
        )
    return statements


def grant_statements(services: Iterable[Service] = SERVICES.values()) -> list[str]:
    """Each role uses only its own schema and gets its tables and sequences where it has none."""
    statements = ["REVOKE CREATE ON SCHEMA public FROM PUBLIC"]
    for spec in services:
        schema, role = _identifier(spec.schema), _identifier(spec.role)
        statements.append(
            f"""DO $$
DECLARE
    relation regclass;
BEGIN
    IF to_regnamespace('{schema}') IS NULL THEN
        RAISE EXCEPTION 'schema {schema} of service {spec.name} is created by no migration';
    END IF;
    REVOKE ALL ON SCHEMA {schema} FROM PUBLIC;
    GRANT USAGE ON SCHEMA {schema} TO {role};
    FOR relation IN
        SELECT c.oid FROM pg_catalog.pg_class c
        WHERE c.relnamespace = '{schema}'::regnamespace AND c.relkind IN ('r', 'p', 'v')
          AND NOT EXISTS (SELECT FROM aclexplode(c.relacl) a WHERE a.grantee = '{role}'::regrole)
    LOOP
        EXECUTE format('GRANT {TABLE_PRIVILEGES} ON TABLE %s TO {role}', relation);
    END LOOP;
    FOR relation IN
        SELECT c.oid FROM pg_catalog.pg_class c
        WHERE c.relnamespace = '{schema}'::regnamespace AND c.relkind = 'S'
          AND NOT EXISTS (SELECT FROM aclexplode(c.relacl) a WHERE a.grantee = '{role}'::regrole)
    LOOP
        EXECUTE format('GRANT {SEQUENCE_PRIVILEGES} ON SEQUENCE %s TO {role}', relation);
    END LOOP;
END
$$"""  # noqa: S608 (identifiers checked by _identifier)
        )
    return statements
