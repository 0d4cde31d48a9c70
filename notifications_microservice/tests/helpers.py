"""Test helpers: events as producers send them, what moto received, a webhook receiver."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx
from botocore.awsrequest import AWSResponse
from standardwebhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from micropay_testing.cognito import CognitoUser
from micropay_testing.http import bearer


def new_user() -> tuple[str, str]:
    """A fresh (user_id, email) pair."""
    user_id = str(uuid.uuid4())
    return user_id, f"n-{user_id[:12]}@example.com"


# --- moto -------------------------------------------------------------------------------------


def moto_data(moto_endpoint: str) -> dict[str, Any]:
    """Everything moto holds (its /moto-api/data.json)."""
    data: dict[str, Any] = httpx.get(f"{moto_endpoint}/moto-api/data.json", timeout=10).json()
    return data


def emails_to(moto_endpoint: str, address: str) -> list[dict[str, Any]]:
    """Emails SES accepted for `address` (moto keeps the HTML body when there is one)."""
    return [
        message
        for message in moto_data(moto_endpoint)["ses"]["Message"]
        if address in message["destinations"].get("ToAddresses", [])
    ]


def topic_publishes(moto_endpoint: str, topic_arn: str, user_id: str) -> list[dict[str, Any]]:
    """Messages published to the topic with the `user_id` attribute `user_id`."""
    topics = [t for t in moto_data(moto_endpoint)["sns"]["Topic"] if t["arn"] == topic_arn]
    found = []
    for message_id, message, _subject, attributes, _group in topics[0]["sent_notifications"]:
        if (attributes or {}).get("user_id", {}).get("Value") == user_id:
            found.append(
                {"id": message_id, "message": json.loads(message), "attributes": attributes}
            )
    return found


def endpoint_messages(moto_endpoint: str, endpoint_arn: str) -> list[str] | None:
    """Messages published to a platform endpoint; None when the endpoint does not exist."""
    for endpoint in moto_data(moto_endpoint)["sns"]["PlatformEndpoint"]:
        if endpoint["arn"] == endpoint_arn:
            return list(endpoint["messages"].values())
    return None


# --- a webhook receiver -----------------------------------------------------------------------


@dataclass
class Received:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes
    verified: Any | None
    error: str | None


@dataclass
class Receiver:
    """An HTTP app standing for a user's system: records requests, verifies signatures, and
    answers per path as the test scripts it (status, headers, body, delay)."""

    secrets: dict[str, str] = field(default_factory=dict)
    scripts: dict[str, list[tuple[int, dict[str, str], str, float]]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    def script(self, path: str, *answers: tuple[int, dict[str, str], str, float]) -> None:
        """Answers for the next requests to `path`; 200 "ok" once they are used up."""
        self.scripts[path] = list(answers)

    def at(self, path: str) -> list[Received]:
        """Requests received at `path`."""
        return [r for r in self.received if r.path == path]

    async def handle(self, request: Request) -> Response:
        path = request.url.path
        body = await request.body()
        headers = {k: v for k, v in request.headers.items()}
        verified = error = None
        secret = self.secrets.get(path)
        if secret is not None:
            try:
                verified = Webhook(secret).verify(body, headers)
            except WebhookVerificationError as exc:
                error = str(exc)
        self.received.append(Received(path, headers, body, verified, error))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            answers = self.scripts.get(path)
            status, extra_headers, text, delay = answers.pop(0) if answers else (200, {}, "ok", 0.0)
            if delay:
                await asyncio.sleep(delay)
            return Response(text, status_code=status, headers=extra_headers)
        finally:
            self.in_flight -= 1

    def app(self) -> Starlette:
        """The ASGI app to run under serve_http."""
        return Starlette(routes=[Route("/{path:path}", self.handle, methods=["POST"])])


async def create_webhook(
    client: httpx.AsyncClient,
    user: CognitoUser,
    url: str,
    events: list[str] | None = None,
    receiver: Receiver | None = None,
) -> dict[str, Any]:
    """Register a webhook endpoint through the API (and its secret with the receiver)."""
    body: dict[str, Any] = {"url": url}
    if events is not None:
        body["events"] = events
    response = await client.post(
        "/notifications/webhooks", json=body, headers=bearer(user.access_token)
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    if receiver is not None:
        receiver.secrets[httpx.URL(url).path] = created["secret"]
    return created


# --- AWS answers moto cannot give ------------------------------------------------------------


def answer_with(
    client: Any, operation: str, parsed: dict[str, Any], *, times: int, status: int = 200
) -> list[int]:
    """Make the next `times` calls of `operation` on this boto3 client get AWS's answer `parsed`.

    moto never throttles and its quota is fixed, so the answer is given at botocore's own edge
    (its `before-call` event, where a response replaces the HTTP exchange): everything of ours,
    from building the request to reading botocore's result or ClientError, runs as it does
    against AWS. Returns a list that counts the answers given.
    """
    given: list[int] = []
    service_id = client.meta.service_model.service_id.hyphenize()

    def answer(**_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        if len(given) >= times:
            return None
        given.append(1)
        return AWSResponse("https://aws.invalid/", status, {}, None), parsed

    client.meta.events.register(f"before-call.{service_id}.{operation}", answer)
    return given


class AwsEdge:
    """An HTTP stand-in in front of moto for the delivery worker's own SES and SNS calls, which
    do not go through botocore's events: the next calls of an action get AWS's error document
    (moto never throttles), every other request reaches moto unchanged. Run it under serve_http
    and point AWS_ENDPOINT_URL at it."""

    def __init__(self, moto_endpoint: str) -> None:
        self.moto_endpoint = moto_endpoint
        self._errors: dict[str, tuple[str, int, list[int]]] = {}

    def answer_with_error(self, action: str, code: str, *, times: int) -> list[int]:
        """The next `times` calls of `action` get AWS's error `code` (HTTP 400, as AWS answers a
        rate); returns a list that counts the answers given."""
        given: list[int] = []
        self._errors[action] = (code, times, given)
        return given

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        action = parse_qs(body.decode()).get("Action", [""])[0]
        code, times, given = self._errors.get(action, ("", 0, []))
        if len(given) < times:
            given.append(1)
            document = (
                "<ErrorResponse><Error><Type>Sender</Type>"
                f"<Code>{code}</Code><Message>Rate exceeded</Message></Error>"
                f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
            )
            return Response(document, status_code=400, media_type="text/xml")
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")
        }
        async with httpx.AsyncClient() as client:
            answer = await client.request(
                request.method,
                f"{self.moto_endpoint}{request.url.path}",
                content=body,
                headers=headers,
            )
        return Response(
            answer.content,
            status_code=answer.status_code,
            media_type=answer.headers.get("content-type"),
        )

    def app(self) -> Starlette:
        """The ASGI app to run under serve_http."""
        return Starlette(routes=[Route("/{path:path}", self.handle, methods=["GET", "POST"])])
