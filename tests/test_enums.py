"""Each closed set of strings is one StrEnum: the database's CHECK lists it, the API accepts it.

The CHECKs are read from the database the session built (not from a schema file), so whatever
creates the schema is held to the enums the code uses.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from enum import StrEnum
from typing import Any

import asyncpg
import pytest
from sqlalchemy import CheckConstraint, MetaData

from micropay_common.constraints import enum_of
from micropay_common.services import SERVICES, Service
from micropay_common.tables import shared_metadata
from micropay_testing.database import TestDatabase
from notifications_microservice.models import NotificationStatus, WebhookEndpointStatus
from payment_microservice.models import StripeEventOutcome
from stack.postgres import asyncpg_dsn

# PostgreSQL keeps `status IN ('a', 'b')` as `status = ANY (ARRAY['a'::text, 'b'::text])`.
_IN_LIST = re.compile(r"^CHECK \(\((\w+) = ANY \(ARRAY\[(.*)\]\)\)\)$")
_LISTED = re.compile(r"'((?:[^']|'')*)'::text")

# API fields that show part of a concept on purpose, and exactly what each accepts.
PARTIAL: dict[tuple[str, str], set[str]] = {
    # Deleted endpoints are never shown.
    ("notifications", "WebhookEndpointRead.status"): {
        WebhookEndpointStatus.ENABLED,
        WebhookEndpointStatus.DISABLED,
    },
    ("notifications", "WebhookEndpointCreated.status"): {
        WebhookEndpointStatus.ENABLED,
        WebhookEndpointStatus.DISABLED,
    },
    # A redelivery is always queued.
    ("notifications", "RedeliveryRead.status"): {NotificationStatus.PENDING},
    # The recorded outcome, or a repeat of an event received before (nothing recorded).
    ("payment", "WebhookReceipt.outcome"): {*StripeEventOutcome, "duplicate"},
}


def service_metadata(service: Service) -> MetaData | None:
    """The metadata of a service's own models, if it has any."""
    try:
        module = importlib.import_module(f"{service.package}.models")
    except ModuleNotFoundError:
        return None
    metadata: MetaData = module.Base.metadata
    return metadata


def enum_checks() -> Iterator[tuple[str, str, CheckConstraint, type[StrEnum]]]:
    """(schema, table, constraint, enum) of every CHECK the models build from an enum."""
    for service in SERVICES.values():
        for table in shared_metadata.sorted_tables:
            yield from _enum_checks_of(service.schema, table.name, table.constraints)
        metadata = service_metadata(service)
        if metadata is not None:
            for table in metadata.sorted_tables:
                assert table.schema == service.schema, f"{table.name} is outside its schema"
                yield from _enum_checks_of(service.schema, table.name, table.constraints)


def _enum_checks_of(
    schema: str, table: str, constraints: Any
) -> Iterator[tuple[str, str, CheckConstraint, type[StrEnum]]]:
    for constraint in constraints:
        if isinstance(constraint, CheckConstraint):
            values = enum_of(constraint)
            if values is not None:
                yield schema, table, constraint, values


async def in_list_checks(
    database: TestDatabase,
) -> dict[tuple[str, str, str], tuple[str, list[str]]]:
    """(schema, table, name) → (column, values) of every `column IN (...)` CHECK in the database."""
    conn = await asyncpg.connect(**asyncpg_dsn(database.admin_url))
    try:
        rows = await conn.fetch(
            """
            SELECT n.nspname AS schema, c.relname AS table_name, con.conname,
                   pg_get_constraintdef(con.oid) AS definition
            FROM pg_constraint con
            JOIN pg_class c ON c.oid = con.conrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = ANY($1::text[]) AND con.contype = 'c'
            """,
            [service.schema for service in SERVICES.values()],
        )
    finally:
        await conn.close()
    found = {}
    for row in rows:
        match = _IN_LIST.match(row["definition"])
        if match:
            values = [value.replace("''", "'") for value in _LISTED.findall(match[2])]
            found[(row["schema"], row["table_name"], row["conname"])] = (match[1], values)
    return found


async def test_every_in_list_check_lists_its_enum(database: TestDatabase) -> None:
    in_database = await in_list_checks(database)
    in_models = {}
    for schema, table, constraint, enum in enum_checks():
        assert isinstance(constraint.name, str), f"{schema}.{table}: a check_in without a name"
        column = str(constraint.sqltext).split(" IN ", 1)[0]
        in_models[(schema, table, constraint.name)] = (column, [value.value for value in enum])
    assert in_models, "no CHECK is built from an enum"
    assert set(in_database) == set(in_models), (
        "IN-list CHECKs not built from an enum by check_in, or missing from the database: "
        f"{sorted(set(in_database) ^ set(in_models))}"
    )
    for key, listed in in_models.items():
        assert in_database[key] == listed, f"{'.'.join(key)}: enum and database differ"


def enum_fields(document: dict[str, Any]) -> Iterator[tuple[str, set[str]]]:
    """(field, values) of every field and parameter of an OpenAPI document that is a closed set
    of strings: `Schema.property` (`.items` for arrays) or `METHOD /path ?parameter`."""
    schemas = document.get("components", {}).get("schemas", {})
    for name, schema in schemas.items():
        for prop, node in schema.get("properties", {}).items():
            yield from _values_of(f"{name}.{prop}", node, schemas)
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                field = f"{method.upper()} {path} ?{parameter['name']}"
                yield from _values_of(field, parameter["schema"], schemas)


def _values_of(
    field: str, node: dict[str, Any], schemas: dict[str, Any]
) -> Iterator[tuple[str, set[str]]]:
    if "$ref" in node:
        node = schemas[node["$ref"].rsplit("/", 1)[1]]
    if node.get("type") == "array":
        yield from _values_of(f"{field}.items", node["items"], schemas)
        return
    values: set[str] = set()
    for branch in node.get("anyOf", [node]):
        if "$ref" in branch:
            branch = schemas[branch["$ref"].rsplit("/", 1)[1]]
        values.update(branch.get("enum", []))
        if "const" in branch:
            values.add(branch["const"])
    if values:
        yield field, values


@pytest.mark.parametrize("service", list(SERVICES.values()), ids=lambda service: service.name)
def test_api_fields_of_a_concept_accept_exactly_its_enum(service: Service) -> None:
    # The service's own concepts; the outbox's statuses are in no API.
    concepts = {
        values
        for _, _, _, values in enum_checks()
        if values.__module__ == f"{service.package}.models"
    }
    document = importlib.import_module(f"{service.package}.main").app.openapi()
    seen = set()
    for field, accepted in enum_fields(document):
        if (service.name, field) in PARTIAL:
            seen.add((service.name, field))
            assert accepted == PARTIAL[(service.name, field)], f"{service.name} {field}"
            continue
        overlapping = [values for values in concepts if accepted & set(values)]
        if overlapping:
            assert any(accepted == set(values) for values in overlapping), (
                f"{service.name} {field} accepts {sorted(accepted)}, not one of "
                f"{[values.__name__ for values in overlapping]}"
            )
    assert seen == {key for key in PARTIAL if key[0] == service.name}, "stale PARTIAL entries"
