"""No public answer of any service names another user by id.

A user id in an answer lets its reader follow that user across the API; the other side of a
transfer or a ledger line is named by the email the caller already knows. Events and
`/internal/` routes, which only services read, may carry ids.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from typing import Any

import pytest

from micropay_common.services import SERVICES, Service

# Fields that would name a user other than the caller: anything `*_user_id` (a bare `user_id`
# is the caller's own, or on an admin route the listed user's) and the usual names of the
# other side of a movement of money.
_OTHER_USERS_ID = re.compile(
    r"^(?:\w+_user_id|(?:from|to|counterparty|recipient|sender|payer|payee|owner|other)_id)$"
)


def _schemas_under(node: Any, schemas: dict[str, Any], seen: set[str]) -> Iterator[str]:
    """Names of the component schemas `node` refers to, directly or through others."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            name = ref.rsplit("/", 1)[-1]
            if name not in seen:
                seen.add(name)
                yield name
                yield from _schemas_under(schemas.get(name, {}), schemas, seen)
        for value in node.values():
            yield from _schemas_under(value, schemas, seen)
    elif isinstance(node, list):
        for value in node:
            yield from _schemas_under(value, schemas, seen)


def public_response_schemas(document: dict[str, Any]) -> dict[str, list[str]]:
    """The component schemas of each public (not `/internal/`) route's responses, by route."""
    schemas = document.get("components", {}).get("schemas", {})
    found: dict[str, list[str]] = {}
    for path, operations in document["paths"].items():
        if path.startswith("/internal/"):
            continue
        for method, operation in operations.items():
            responses = operation.get("responses", {})
            found[f"{method.upper()} {path}"] = list(_schemas_under(responses, schemas, set()))
    return found


def other_users_ids(document: dict[str, Any], schema: str) -> list[str]:
    """The properties of a component schema that name another user by id."""
    node = document.get("components", {}).get("schemas", {}).get(schema, {})
    return [name for name in node.get("properties", {}) if _OTHER_USERS_ID.match(name)]


def test_the_pattern_catches_what_it_is_for() -> None:
    for name in ("to_user_id", "from_user_id", "counterparty_user_id", "recipient_id"):
        assert _OTHER_USERS_ID.match(name), name
    for name in ("user_id", "id", "transfer_id", "payment_id", "notification_id"):
        assert not _OTHER_USERS_ID.match(name), name


@pytest.mark.parametrize("service", list(SERVICES.values()), ids=lambda service: service.name)
def test_no_public_answer_names_another_user_by_id(service: Service) -> None:
    document = importlib.import_module(f"{service.package}.main").app.openapi()
    routes = public_response_schemas(document)
    assert routes, f"{service.name} has no public routes to check"
    offenders = {
        f"{route}: {schema}.{field}"
        for route, schemas in routes.items()
        for schema in schemas
        for field in other_users_ids(document, schema)
    }
    assert not offenders, sorted(offenders)
