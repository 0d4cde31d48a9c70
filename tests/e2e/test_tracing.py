"""One trace per user action, across the services and the outbox (issue 20).

A stack of its own, with tracing on, exports its spans over OTLP/HTTP to a receiver in this
process (`micropay_testing.otlp`): the services run as processes, so an in-memory exporter
inside them could not be read from here; the receiver decodes the same spans the exporter
sends a collector. The rest of the suite runs on stacks with tracing off.

The client sends a `traceparent` through the gateway, so each action's trace id is known in
advance and the gateway's forwarding is checked on the way.
"""

from __future__ import annotations

import json
import secrets
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from micropay_testing.apps import serve_http
from micropay_testing.otlp import ReceivedSpan, TraceReceiver, otlp_receiver, render_tree
from micropay_testing.polling import eventually
from micropay_testing.processes import free_port
from stack.gateway import find_nginx
from stack.launcher import Stack, StackConfig
from tests.e2e.client import Api, User, WebhookReceiver
from tests.e2e.conftest import E2E_SERVICE_ENV, StackLog

TRACE_WAIT_SECONDS = 30.0


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[TraceReceiver, str]]:
    """The OTLP receiver and its endpoint URL."""
    port = free_port()
    with otlp_receiver(port) as received:
        yield received, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def traced_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackLog]:
    """The processes' output of the traced stack."""
    log = StackLog(tmp_path_factory.mktemp("traced-logs") / "stack.log")
    yield log
    log.close()


@pytest.fixture(scope="module")
def traced_stack(receiver: tuple[TraceReceiver, str], traced_log: StackLog) -> Iterator[Stack]:
    """A whole stack (gateway included) whose services trace and export to `receiver`."""
    if find_nginx() is None:
        pytest.fail("the tracing test drives the stack through the nginx gateway: install nginx")
    log = traced_log
    data_dir = Path(tempfile.mkdtemp(prefix="micropay-traced-"))
    env = {
        **E2E_SERVICE_ENV,
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver[1],
        # Exported within a fifth of a second rather than the default five.
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        # A top-up's money may be sent on at once: the transfer test spends it.
        "CARD_FUNDS_SETTLE_SECONDS": "0",
    }
    config = StackConfig.with_free_ports(
        data_dir=data_dir, database_url=None, service_extra_env=env
    )
    stack = Stack(config, output=log)
    try:
        stack.start()
    except Exception as exc:
        shutil.rmtree(data_dir, ignore_errors=True)
        pytest.fail(f"the traced stack did not start ({exc}); its output: {log.path}")
    try:
        yield stack
    finally:
        stack.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
async def api(traced_stack: Stack) -> AsyncIterator[Api]:
    """A client of the traced stack's gateway."""
    assert traced_stack.gateway_url is not None
    async with httpx.AsyncClient(
        base_url=traced_stack.gateway_url, timeout=30, trust_env=False
    ) as client:
        yield Api(client=client, stack=traced_stack)


def new_traceparent() -> tuple[str, str, str]:
    """A client's own span: (traceparent, trace id, span id)."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def one(spans: list[ReceivedSpan], service: str, name: str) -> ReceivedSpan:
    """The one span of `service` named `name`."""
    found = [span for span in spans if span.service == service and span.name == name]
    assert len(found) == 1, f"{len(found)} spans {service}: {name} in\n{render_tree(spans)}"
    return found[0]


def named(spans: list[ReceivedSpan], service: str, name: str) -> list[ReceivedSpan]:
    """Every span of `service` named `name`."""
    return [span for span in spans if span.service == service and span.name == name]


def aws_calls(spans: list[ReceivedSpan], service: str, method: str) -> list[ReceivedSpan]:
    """The botocore spans of one AWS API call (SNS names its spans after the topic)."""
    return [
        span
        for span in spans
        if span.attributes.get("rpc.service") == service
        and span.attributes.get("rpc.method") == method
    ]


def chain(spans: list[ReceivedSpan], span: ReceivedSpan) -> list[ReceivedSpan]:
    """`span` and its ancestors up to the trace's first exported span, nearest first; fails on
    a parent that is missing from the trace (a broken link)."""
    by_id = {s.span_id: s for s in spans}
    path = [span]
    while path[-1].parent_span_id is not None and path[-1].parent_span_id in by_id:
        path.append(by_id[path[-1].parent_span_id])
    return path


def descends(spans: list[ReceivedSpan], span: ReceivedSpan, ancestor: ReceivedSpan) -> bool:
    """Whether `ancestor` is on `span`'s chain of parents."""
    return ancestor in chain(spans, span)[1:]


def closed(spans: list[ReceivedSpan], root_parent: str) -> bool:
    """Whether every span's parent has arrived too (a child ends, and may be exported, before
    its parent)."""
    ids = {span.span_id for span in spans}
    return all(span.parent_span_id in ids or span.parent_span_id == root_parent for span in spans)


def has_all(root_parent: str, *wanted: tuple[str, str]) -> Callable[[list[ReceivedSpan]], bool]:
    """A condition: the trace holds a span of each (service, name), and is closed."""

    def holds(spans: list[ReceivedSpan]) -> bool:
        return closed(spans, root_parent) and all(
            any(s.service == svc and s.name == n for s in spans) for svc, n in wanted
        )

    return holds


async def register(api: Api, prefix: str) -> User:
    """A registered, logged-in user whose wallet exists."""
    user = await api.register(prefix)
    await api.balance_becomes(user, 0)
    return user


async def test_a_top_up_is_one_trace_from_the_gateway_to_ses_and_sns(
    api: Api, receiver: tuple[TraceReceiver, str], traced_log: StackLog
) -> None:
    """POST /payments → Stripe → outbox → transactions credit → notifications → SES and SNS."""
    traces, _ = receiver
    user = await register(api, "traced-top-up")
    hooks = WebhookReceiver()
    async with serve_http(hooks.app()) as hooks_url:
        subscribed = await api.client.post(
            "/notifications/webhooks",
            json={"url": f"{hooks_url}/top-ups", "events": ["payment.succeeded"]},
            headers=user.auth,
        )
        assert subscribed.status_code == 201, subscribed.text
        hooks.secrets["/top-ups"] = subscribed.json()["secret"]
        traceparent, trace_id, client_span = new_traceparent()
        mark = traced_log.mark()
        response = await api.client.post(
            "/payments",
            json={"amount": 4200, "currency": "USD", "payment_method": "pm_card_visa"},
            headers={
                **user.auth,
                "Idempotency-Key": str(uuid.uuid4()),
                "traceparent": traceparent,
            },
        )
        assert response.status_code == 201, response.text
        assert response.json()["status"] == "succeeded"
        await api.balance_becomes(user, 4200)
        await eventually(lambda: bool(hooks.at("/top-ups")), within=TRACE_WAIT_SECONDS)

    top_up_done = has_all(
        client_span,
        ("payment", "POST /payments"),
        ("payment", "stripe create_payment_intent"),
        ("transactions", "POST /internal/events"),
        ("notifications", "POST /internal/events"),
        ("notifications", "SES.SendEmail"),
        ("notifications", "notification send email"),
        ("notifications", "notification send push"),
        ("notifications", "notification send webhook"),
    )
    spans = traces.wait_for(
        lambda found: top_up_done(found) and bool(aws_calls(found, "SNS", "PublishBatch")),
        trace_id,
        TRACE_WAIT_SECONDS,
    )
    tree = render_tree(spans)
    # The gateway forwarded the client's context: the request is its span's child, and the
    # access check (auth) joined the same trace.
    request = one(spans, "payment", "POST /payments")
    assert request.kind == "SERVER"
    assert request.parent_span_id == client_span, tree
    verify = [s for s in spans if s.service == "auth" and s.name.endswith(" /auth/verify")]
    assert verify, tree
    assert all(s.parent_span_id == client_span for s in verify), tree

    stripe = one(spans, "payment", "stripe create_payment_intent")
    assert stripe.kind == "CLIENT", tree
    assert stripe.parent_span_id == request.span_id, tree
    # Its HTTP requests to Stripe (localstripe) are its children.
    assert any(s.parent_span_id == stripe.span_id and s.kind == "CLIENT" for s in spans), tree

    # The outbox: one delivery per consumer, each continuing the request's trace.
    deliveries = named(spans, "payment", "outbox deliver payment.succeeded")
    assert {d.attributes["messaging.destination.name"] for d in deliveries} >= {
        "transactions",
        "notifications",
    }, tree
    for delivery in deliveries:
        assert delivery.kind == "PRODUCER"
        assert descends(spans, delivery, request), tree

    # transactions credits the wallet as a child of its delivery, in the database.
    credit = one(spans, "transactions", "POST /internal/events")
    to_transactions = next(
        d for d in deliveries if d.attributes["messaging.destination.name"] == "transactions"
    )
    assert descends(spans, credit, to_transactions), tree
    assert any(
        s.service == "transactions" and s.kind == "CLIENT" and s.parent_span_id == credit.span_id
        for s in spans
    ), tree

    # notifications receives it, and the worker's sends (long after) join the same trace.
    received = one(spans, "notifications", "POST /internal/events")
    to_notifications = next(
        d for d in deliveries if d.attributes["messaging.destination.name"] == "notifications"
    )
    assert descends(spans, received, to_notifications), tree
    email = one(spans, "notifications", "notification send email")
    push = one(spans, "notifications", "notification send push")
    for send in (email, push):
        assert send.kind == "CONSUMER", tree
        assert send.parent_span_id == received.span_id, tree
    (ses,) = aws_calls(spans, "SES", "SendEmail")
    (sns,) = aws_calls(spans, "SNS", "PublishBatch")
    assert ses.parent_span_id == email.span_id, tree
    assert sns.parent_span_id == push.span_id, tree
    # The webhook's POST is the send's child, and the receiver got the trace with it.
    webhook = one(spans, "notifications", "notification send webhook")
    assert webhook.parent_span_id == received.span_id, tree
    (post,) = [s for s in spans if s.parent_span_id == webhook.span_id]
    assert post.kind == "CLIENT", tree
    (hook,) = hooks.at("/top-ups")
    assert hook.error is None
    assert hook.headers["traceparent"].split("-")[1:3] == [trace_id, post.span_id]
    # Every span of the action hangs off the client's span: no orphan, no second root.
    assert {chain(spans, s)[-1].parent_span_id for s in spans} == {client_span}, tree
    assert {s.service for s in spans} >= {"auth", "payment", "transactions", "notifications"}

    # The access line of the request carries its trace and span beside the request id.
    (access,) = [
        line
        for line in map(json.loads, _json_lines(traced_log.since(mark, "payment")))
        if line.get("logger") == "micropay.access" and line.get("path") == "/payments"
    ]
    assert access["trace_id"] == trace_id
    assert access["span_id"] == request.span_id
    assert access["request_id"] == response.headers["X-Request-ID"]


def _json_lines(lines: list[str]) -> list[str]:
    """The JSON objects among a process's output lines (`name | {...}`)."""
    bodies = (line.split(" | ", 1)[1] for line in lines)
    return [body for body in bodies if body.startswith("{")]


async def test_a_transfer_is_one_trace_through_the_sql_function_and_the_outbox(
    api: Api, receiver: tuple[TraceReceiver, str]
) -> None:
    """POST /transactions/transfers → transactions.transfer (its outbox row) → notifications
    → an email to each side, in one trace."""
    traces, _ = receiver
    sender = await register(api, "traced-sender")
    recipient = await register(api, "traced-recipient")
    funded = await api.top_up(sender, 3000)
    assert funded.status_code == 201, funded.text
    await api.balance_becomes(sender, 3000)

    traceparent, trace_id, client_span = new_traceparent()
    response = await api.client.post(
        "/transactions/transfers",
        json={"to_email": recipient.email, "amount": 1200, "currency": "USD"},
        headers={**sender.auth, "Idempotency-Key": str(uuid.uuid4()), "traceparent": traceparent},
    )
    assert response.status_code == 201, response.text
    await api.balance_becomes(recipient, 1200)

    def complete(spans: list[ReceivedSpan]) -> bool:
        return (
            len(named(spans, "notifications", "notification send email")) >= 2
            and bool(named(spans, "transactions", "POST /transactions/transfers"))
            and closed(spans, client_span)
        )

    spans = traces.wait_for(complete, trace_id, TRACE_WAIT_SECONDS)
    tree = render_tree(spans)
    request = one(spans, "transactions", "POST /transactions/transfers")
    assert request.parent_span_id == client_span, tree
    # The whole transfer is one statement on the app's asyncpg pool, traced as such.
    statement = one(spans, "transactions", "SELECT transactions.transfer")
    assert statement.kind == "CLIENT", tree
    assert statement.parent_span_id == request.span_id, tree
    assert statement.attributes["db.system.name"] == "postgresql"

    # The function wrote the outbox row with the request's trace context: its delivery joins.
    delivery = one(spans, "transactions", "outbox deliver transfer.completed")
    assert delivery.parent_span_id == request.span_id, tree
    received = one(spans, "notifications", "POST /internal/events")
    assert descends(spans, received, delivery), tree
    sends = named(spans, "notifications", "notification send email")
    assert len(sends) == 2, tree
    for send in sends:
        assert send.parent_span_id == received.span_id, tree
    for ses in aws_calls(spans, "SES", "SendEmail"):
        assert ses.parent_span_id in {send.span_id for send in sends}, tree
    assert {chain(spans, s)[-1].parent_span_id for s in spans} == {client_span}, tree
