"""The event contract: one definition per event, held to the services that send and receive it."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from types import ModuleType

import pytest
from pydantic import ValidationError

from micropay_common.events import (
    EVENT_MODELS,
    Event,
    EventEnvelope,
    EventType,
    PaymentSucceeded,
    TransferCompleted,
    UnknownEventType,
    event_model,
    events_consumed_by,
    events_produced_by,
    producer_of,
)
from micropay_common.money import MAX_AMOUNT
from micropay_common.services import SERVICES, ServiceName, all_services
from micropay_testing.events import handled_events

ROOT = Path(__file__).resolve().parents[2]


def test_every_event_type_has_one_model_one_producer_and_consumers() -> None:
    assert set(EVENT_MODELS) == set(EventType)
    # Every model is registered, under its own type, and no two share one.
    assert set(EVENT_MODELS.values()) == set(Event.__subclasses__())
    for event_type, model in EVENT_MODELS.items():
        assert model.event_type is event_type
        assert model.producer in SERVICES
        assert model.consumers, f"{event_type} reaches no one"
        assert len(set(model.consumers)) == len(model.consumers)
        assert set(model.consumers) <= set(SERVICES)
        assert model.producer not in model.consumers


def test_the_registry_answers_by_type_and_by_service() -> None:
    assert event_model("payment.succeeded") is PaymentSucceeded
    assert producer_of(EventType.TRANSFER_COMPLETED) is ServiceName.TRANSACTIONS
    assert events_produced_by(ServiceName.PAYMENT) == {
        EventType.PAYMENT_SUCCEEDED,
        EventType.PAYMENT_FAILED,
        EventType.PAYMENT_REFUNDED,
        EventType.PAYMENT_REFUND_FAILED,
        EventType.PAYMENT_DISPUTE_OPENED,
        EventType.PAYMENT_DISPUTE_FUNDS_WITHDRAWN,
        EventType.PAYMENT_DISPUTE_FUNDS_REINSTATED,
        EventType.PAYMENT_DISPUTE_CLOSED,
    }
    assert events_consumed_by(ServiceName.TRANSACTIONS) == {
        EventType.USER_REGISTERED,
        EventType.PAYMENT_SUCCEEDED,
        EventType.PAYMENT_REFUNDED,
        EventType.PAYMENT_REFUND_FAILED,
        EventType.PAYMENT_DISPUTE_FUNDS_WITHDRAWN,
        EventType.PAYMENT_DISPUTE_FUNDS_REINSTATED,
    }
    assert events_produced_by(ServiceName.NOTIFICATIONS) == frozenset()
    assert events_consumed_by(ServiceName.AUTH) == frozenset()
    with pytest.raises(UnknownEventType, match=r"payment\.exploded"):
        event_model("payment.exploded")


def main_module(service: ServiceName) -> ModuleType:
    """The service's `main` module, whose `app` is what uvicorn serves."""
    return importlib.import_module(f"{SERVICES[service].package}.main")


@pytest.mark.parametrize("service", list(ServiceName))
def test_each_service_mounts_a_handler_for_exactly_the_events_routed_to_it(
    service: ServiceName,
) -> None:
    handled = handled_events(main_module(service).app)
    routed = events_consumed_by(service)
    if routed:
        assert handled == routed
    else:
        assert handled is None, f"{service} consumes no event and needs no inbox"


def publish_calls(tree: ast.Module) -> list[ast.Call]:
    """The calls of `micropay_common.outbox.publish` in a module, however it was imported."""
    functions: set[str] = set()  # local names of the function
    modules: set[str] = set()  # local names of the outbox module
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "micropay_common.outbox":
            functions |= {a.asname or a.name for a in node.names if a.name == "publish"}
        elif isinstance(node, ast.ImportFrom) and node.module == "micropay_common":
            modules |= {a.asname or a.name for a in node.names if a.name == "outbox"}
        elif isinstance(node, ast.Import):
            modules |= {
                a.asname for a in node.names if a.name == "micropay_common.outbox" and a.asname
            }
    calls = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        callee = node.func
        if (isinstance(callee, ast.Name) and callee.id in functions) or (
            isinstance(callee, ast.Attribute)
            and callee.attr == "publish"
            and isinstance(callee.value, ast.Name)
            and callee.value.id in modules
        ):
            calls.append(node)
    return calls


def envelope_calls(tree: ast.Module) -> list[ast.Call]:
    """The calls of `EventEnvelope.of`: the outbox payload a SQL function writes (a hot path in
    one statement, docs/conventions.md) is built in the service with it."""
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "of"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "EventEnvelope"
    ]


def _event_argument(call: ast.Call, tree: ast.Module) -> ast.expr | None:
    """The event a publish (second argument) or an envelope (first) is given; a name bound in
    the module to a call of an event class counts as that call."""
    index = 0 if isinstance(call.func, ast.Attribute) and call.func.attr == "of" else 1
    event = call.args[index] if len(call.args) > index else None
    if isinstance(event, ast.Name):
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Assign)
                and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id == event.id
                and isinstance(node.value, ast.Call)
            ):
                return node.value
    return event


def published_event_classes(package: str) -> list[tuple[str, str]]:
    """(where, class name) of each event a package's code passes to `publish`, or builds the
    envelope of for a SQL function to write."""
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        if "tests" in path.relative_to(ROOT).parts:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for call in publish_calls(tree) + envelope_calls(tree):
            where = f"{path.relative_to(ROOT)}:{call.lineno}"
            event = _event_argument(call, tree)
            # The event is built in the call, so what is published can be read off the code.
            assert isinstance(event, ast.Call), f"{where}: publish(session, SomeEvent(...))"
            assert isinstance(event.func, ast.Name), f"{where}: publish(session, SomeEvent(...))"
            found.append((where, event.func.id))
    return found


@pytest.mark.parametrize("service", list(all_services()), ids=lambda s: s.name)
def test_producers_publish_only_their_own_events_and_all_of_them(service) -> None:
    published = published_event_classes(service.package)
    models = {model.__name__: model for model in EVENT_MODELS.values()}
    for where, class_name in published:
        model = models.get(class_name)
        assert model is not None, f"{where}: {class_name} is not an event of micropay_common.events"
        assert model.producer is service.name, (
            f"{where}: {service.name} publishes {model.event_type}, "
            f"which only {model.producer} may send"
        )
    types = {models[class_name].event_type for _, class_name in published}
    assert types == events_produced_by(service.name)


def test_the_envelope_takes_type_and_producer_from_the_event() -> None:
    event = PaymentSucceeded(payment_id="p", user_id="u", amount=1250, currency="USD")
    envelope = EventEnvelope.of(event)
    wire = envelope.model_dump(mode="json")
    assert set(wire) == {"id", "type", "occurred_at", "producer", "data"}
    assert (wire["type"], wire["producer"]) == ("payment.succeeded", "payment")
    assert wire["data"] == {
        "payment_id": "p",
        "user_id": "u",
        "amount": 1250,
        "currency": "USD",
        "three_d_secure": False,
    }
    assert PaymentSucceeded.model_validate(wire["data"]) == event


def test_a_payment_event_without_the_3ds_flag_counts_as_not_authenticated() -> None:
    # Events written before the flag existed still validate, on the safe side.
    old = {"payment_id": "p", "user_id": "u", "amount": 1250, "currency": "USD"}
    assert PaymentSucceeded.model_validate(old).three_d_secure is False
    flagged = PaymentSucceeded.model_validate({**old, "three_d_secure": True})
    assert flagged.three_d_secure is True


def test_money_in_events_is_bounded_positive_integer_minor_units() -> None:
    ok = PaymentSucceeded(payment_id="p", user_id="u", amount=MAX_AMOUNT, currency="USD")
    assert ok.amount == MAX_AMOUNT
    for amount in (0, -5, 12.5, "12.50", "12", True, MAX_AMOUNT + 1):
        with pytest.raises(ValidationError):
            PaymentSucceeded.model_validate(
                {"payment_id": "p", "user_id": "u", "amount": amount, "currency": "USD"}
            )
    for currency in ("usd", "US", "USDX", ""):
        with pytest.raises(ValidationError):
            PaymentSucceeded(payment_id="p", user_id="u", amount=1, currency=currency)


def test_a_currency_the_wallets_do_not_hold_is_still_an_event() -> None:
    # A payment taken in such a currency must still reach the ledger (transactions README).
    event = PaymentSucceeded(payment_id="p", user_id="u", amount=5, currency="CHF")
    assert event.currency == "CHF"


def test_unknown_fields_are_ignored_so_producers_can_add_fields() -> None:
    data = {
        "transfer_id": "t",
        "from_user_id": "a",
        "from_email": "a@example.com",
        "to_user_id": "b",
        "to_email": "b@example.com",
        "amount": 5,
        "currency": "EUR",
        "added_later": True,
    }
    assert TransferCompleted.model_validate(data).to_email == "b@example.com"
