"""Each registered service starts from its own module with its own settings, role and schema."""

from __future__ import annotations

import importlib
import inspect
import re
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy import text

from micropay_common.events import EVENTS_PATH, events_consumed_by, producer_of
from micropay_common.services import SERVICES, ServiceName
from micropay_common.state import ServiceState
from micropay_testing.apps import EXPECTED, as_environment_value, serve
from micropay_testing.http import bearer


@pytest.fixture(params=[str(name) for name in SERVICES])
def service(request, service_settings, monkeypatch) -> tuple[str, Any]:
    """A service's module-level app, its environment set as a deployment would set it."""
    name = request.param
    package = SERVICES[ServiceName(name)].package
    settings_module = importlib.import_module(f"{package}.settings")
    settings_cls = next(
        value
        for attribute, value in vars(settings_module).items()
        if attribute.endswith("Settings") and attribute != "ServiceSettings"
    )
    settings = service_settings(name, settings_cls=settings_cls, **EXPECTED[name]["extra"])
    for field, value in settings.model_dump().items():
        if value is not None:
            monkeypatch.setenv(field.upper(), as_environment_value(value))
    return name, importlib.import_module(f"{package}.main")


async def test_starts_ready_on_its_own_role_and_schema(service):
    name, main = service
    async with serve(main.app) as client:
        ready = await client.get("/health/ready")
        async with ServiceState.of(main.app).sessionmaker() as session:
            user = await session.scalar(text("SELECT current_user"))
            path = await session.scalar(text("SHOW search_path"))
    assert ready.status_code == 200
    assert user == SERVICES[ServiceName(name)].role
    assert path == SERVICES[ServiceName(name)].schema


async def test_describes_itself_in_openapi_and_docs(service):
    name, main = service
    async with serve(main.app) as client:
        spec = (await client.get("/openapi.json")).json()
        docs = await client.get("/docs")
    assert spec["info"]["title"] == EXPECTED[name]["title"]
    assert spec["info"]["version"] == main.VERSION
    assert spec["info"]["description"]
    assert {tag["name"] for tag in spec["tags"]} >= {"health", "internal"}
    assert "/health/ready" in spec["paths"]
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()


def internal_operations(app: FastAPI) -> list[tuple[str, str, str]]:
    """(method, route, path) of every `/internal/` route in the app's route table.

    The path is the route's with its parameters filled.
    """

    def fill(match: re.Match[str]) -> str:
        return "1" if match.group(2) == ":int" else "00000000-0000-4000-8000-000000000000"

    return [
        (method, route.path, re.sub(r"\{([^}:]+)(:[^}]+)?\}", fill, route.path))
        for route in iter_route_contexts(app.routes)
        if isinstance(route.original_route, APIRoute)
        and route.path is not None
        and route.path.startswith("/internal/")
        for method in sorted(route.methods or ())
    ]


ADMIN = "admin"
USER = "user"
ANY_SERVICE = frozenset(str(name) for name in SERVICES)


def accepted_callers(service: ServiceName, route: str) -> frozenset[str]:
    """Who each internal route accepts: service names, and `admin` for operators."""
    if route == EVENTS_PATH:
        # The producers of what the service consumes; each event is then checked on its own.
        return frozenset(producer_of(t) for t in events_consumed_by(service))
    if route.startswith("/internal/holds"):
        return frozenset({ServiceName.PAYMENT})
    if route == "/internal/ledger/check":
        return ANY_SERVICE | {ADMIN}
    if route == "/internal/reconcile":
        return frozenset({ServiceName.PAYMENT})
    if route == "/internal/limits/top-ups":
        return frozenset({ServiceName.TRANSACTIONS})
    raise AssertionError(f"{service}'s {route} is not in this table: say who may call it")


def refusal_count(app: FastAPI, route: str) -> float:
    """Callers refused on `route` for not being one it accepts, as /metrics counts them."""
    value = ServiceState.of(app).metrics_registry.get_sample_value(
        "micropay_security_refusals_total", {"route": route, "reason": "caller_not_accepted"}
    )
    return value or 0.0


async def test_every_internal_route_admits_only_the_callers_it_names(
    service, make_user, service_account_headers
):
    name, main = service
    operations = internal_operations(main.app)
    if name != "auth":  # the auth service consumes no events and has no internal API
        assert operations
    callers = {
        **service_account_headers,
        USER: bearer(make_user().access_token),
        ADMIN: bearer(make_user(groups=("admins",)).access_token),
    }
    async with serve(main.app) as client:
        spec = (await client.get("/openapi.json")).json()
        for method, route, path in operations:
            accepted = accepted_callers(ServiceName(name), route)
            anonymous = await client.request(method, path, json={})
            assert anonymous.status_code == 401, (method, path, anonymous.text)
            for caller, headers in callers.items():
                before = refusal_count(main.app, route)
                answer = await client.request(method, path, json={}, headers=headers)
                if caller in accepted:
                    assert answer.status_code not in (401, 403), (caller, path, answer.text)
                    assert refusal_count(main.app, route) == before
                else:
                    assert answer.status_code == 403, (caller, method, path, answer.text)
                    assert answer.json()["type"] == "caller_not_allowed"
                    assert refusal_count(main.app, route) == before + 1
    # The published API documents the refusals of every operation it tags internal.
    internal = [
        operation
        for operations_of_path in spec["paths"].values()
        for operation in operations_of_path.values()
        if "internal" in operation.get("tags", [])
    ]
    assert len(internal) == len(operations)
    assert all({"401", "403"} <= set(operation["responses"]) for operation in internal)


def dependency_calls(app: FastAPI) -> dict[str, set[Any]]:
    """Every dependency each route of the app resolves, router-level ones included."""
    found: dict[str, set[Any]] = {}
    for context in iter_route_contexts(app.routes):
        if not isinstance(context.route, APIRoute):
            continue
        route = f"{sorted(context.route.methods or ())} {context.route.path}"
        calls = found.setdefault(route, set())
        pending = list(context.route.dependant.dependencies)
        while pending:
            dependant = pending.pop()
            if dependant.call is not None:
                calls.add(dependant.call)
            pending.extend(dependant.dependencies)
    return found


def runs_on_the_event_loop(call: Any) -> bool:
    """Whether FastAPI awaits the dependency rather than sending it to its thread pool."""
    target = call if inspect.isfunction(call) or inspect.ismethod(call) else call.__call__
    return inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target)


@pytest.mark.parametrize("name", [str(name) for name in SERVICES])
def test_no_dependency_of_any_route_runs_in_the_thread_pool(name):
    # A plain `def` dependency costs every request a hop to a worker thread and back (and a
    # place in a pool of 40 shared with real blocking work), for what is an attribute read.
    main = importlib.import_module(f"{SERVICES[ServiceName(name)].package}.main")
    calls = dependency_calls(main.app)
    assert any(calls.values())
    blocking = {
        route: sorted(getattr(call, "__qualname__", repr(call)) for call in sync)
        for route, found in calls.items()
        if (sync := {call for call in found if not runs_on_the_event_loop(call)})
    }
    assert not blocking, blocking
