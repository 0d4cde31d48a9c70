"""The delivery worker's SES and SNS calls, as signed AWS Query requests on one aiohttp session.

A boto3 call costs the caller about 2 ms of CPU (parameter validation, its event hooks, urllib3,
the response parser), more than everything else a notification needs. The sends are the
worker's hot path, so they are built here: botocore still provides the credentials (every source
it knows, refreshed as it refreshes them), the endpoint, the signing name and region, and the
SigV4 signature; the request is SES's and SNS's documented Query form, and an error answer
becomes the same `ClientError` boto3 raises, so the senders read it as before. Calls that are not
on the hot path (GetSendQuota, device registration, KMS) stay on boto3.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode
from xml.etree.ElementTree import Element

import aiohttp
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    ReadTimeoutError,
)
from defusedxml import DefusedXmlException, ElementTree

from micropay_common import telemetry
from micropay_common.http import client_session
from micropay_common.metrics import AwsCallMetrics

CONTENT_TYPE = "application/x-www-form-urlencoded; charset=utf-8"
SES_API_VERSION = "2010-12-01"
SNS_API_VERSION = "2010-03-31"
# botocore refreshes temporary credentials 15 minutes before they expire; a copy this young is
# always still valid.
CREDENTIALS_REUSE_SECONDS = 60.0


class CredentialSource:
    """The current credentials of a botocore session, read off the event loop at most once a
    minute (a refresh may call STS or the instance metadata service)."""

    def __init__(self, credentials: Credentials | None) -> None:
        self._credentials = credentials
        self._frozen: ReadOnlyCredentials | None = None
        self._read_at = -CREDENTIALS_REUSE_SECONDS
        self._lock = asyncio.Lock()

    async def current(self) -> ReadOnlyCredentials:
        """Credentials to sign with now; NoCredentialsError when the session has none."""
        if self._credentials is None:
            raise NoCredentialsError
        if time.monotonic() - self._read_at < CREDENTIALS_REUSE_SECONDS and self._frozen:
            return self._frozen
        async with self._lock:
            if time.monotonic() - self._read_at >= CREDENTIALS_REUSE_SECONDS or not self._frozen:
                self._frozen = await asyncio.to_thread(self._credentials.get_frozen_credentials)
                self._read_at = time.monotonic()
        return self._frozen


@dataclass(frozen=True)
class Endpoint:
    """Where one AWS service is called and how its requests are signed (from its boto3 client)."""

    url: str
    service_id: str
    label: str
    signing_name: str
    region: str

    @classmethod
    def of(cls, client: Any) -> Endpoint:
        """The endpoint a boto3 client calls (its region's, or AWS_ENDPOINT_URL's)."""
        meta = client.meta
        model = meta.service_model
        return cls(
            url=meta.endpoint_url.rstrip("/") + "/",
            service_id=model.service_id,
            label=model.service_id.hyphenize(),
            signing_name=model.signing_name,
            region=meta.region_name,
        )


class QueryClient:
    """Signed Query API calls (form POSTs answered in XML) to SES and SNS over kept
    connections; `ClientError` for an error answer, `HTTPClientError` for no answer."""

    def __init__(
        self,
        credentials: CredentialSource,
        *,
        timeout_seconds: float,
        connections: int,
        metrics: AwsCallMetrics | None = None,
    ) -> None:
        self.credentials = credentials
        self.metrics = metrics
        self._timeout = timeout_seconds
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        # Made on first use: a session belongs to the loop that runs the worker.
        if self._session is None:
            self._session = client_session(timeout=self._timeout, connections=self._connections)
        return self._session

    async def call(
        self, endpoint: Endpoint, action: str, version: str, params: Mapping[str, str]
    ) -> Element:
        """Call `action`; the answer's `<ActionResult>` element."""
        body = urlencode({"Action": action, "Version": version, **params})
        request = AWSRequest(
            method="POST", url=endpoint.url, data=body, headers={"Content-Type": CONTENT_TYPE}
        )
        signer = SigV4Auth(await self.credentials.current(), endpoint.signing_name, endpoint.region)
        signer.add_auth(request)
        headers = dict(request.headers.items())
        started = time.perf_counter()
        attributes = (
            {
                "rpc.system": "aws-api",
                "rpc.service": endpoint.service_id,
                "rpc.method": action,
                "cloud.region": endpoint.region,
            }
            if telemetry.enabled()
            else None
        )
        with telemetry.client_span(f"{endpoint.service_id}.{action}", attributes) as span:
            try:
                async with self._http().post(
                    endpoint.url, data=body.encode(), headers=headers
                ) as response:
                    status = response.status
                    answer = await response.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                self._observe(endpoint, action, "error", started)
                telemetry.mark_failed(span, type(exc).__name__)
                raise _no_answer(exc, endpoint.url) from exc
            self._observe(endpoint, action, "ok" if status < 400 else "error", started)
            if status >= 300:
                error = _client_error(action, status, answer)
                telemetry.mark_failed(span, str(error))
                raise error
        return _result(action, answer)

    def _observe(self, endpoint: Endpoint, action: str, outcome: str, started: float) -> None:
        if self.metrics is not None:
            seconds = time.perf_counter() - started
            self.metrics.observe(endpoint.label, action, outcome, seconds)

    async def aclose(self) -> None:
        """Close the kept connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None


def _no_answer(exc: BaseException, url: str) -> BotoCoreError:
    """The error botocore raises when a call gets no answer (what `describe` names)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return EndpointConnectionError(endpoint_url=url, error=exc)
    if isinstance(exc, TimeoutError):
        return ReadTimeoutError(endpoint_url=url, error=exc)
    return HTTPClientError(error=f"{type(exc).__name__}: {exc}")


def _child(element: Element, name: str) -> str | None:
    found = element.find(f"{{*}}{name}")
    return None if found is None else (found.text or "")


def _result(action: str, answer: bytes) -> Element:
    try:
        root = ElementTree.fromstring(answer)
    except (ElementTree.ParseError, DefusedXmlException) as exc:
        raise HTTPClientError(error=f"{action}: unreadable answer") from exc
    result = root.find(f"{{*}}{action}Result")
    if result is None:
        raise HTTPClientError(error=f"{action}: no {action}Result in the answer")
    return result


def _client_error(action: str, status: int, answer: bytes) -> ClientError:
    """The ClientError boto3 would raise for this answer (AWS's `<ErrorResponse>`)."""
    error: dict[str, str] = {"Code": str(status), "Message": answer[:200].decode(errors="replace")}
    try:
        found = ElementTree.fromstring(answer).find(".//{*}Error")
    except (ElementTree.ParseError, DefusedXmlException):
        found = None
    if found is not None:
        error = {
            "Code": _child(found, "Code") or str(status),
            "Message": _child(found, "Message") or "",
            "Type": _child(found, "Type") or "",
        }
    return ClientError({"Error": error, "ResponseMetadata": {"HTTPStatusCode": status}}, action)


class SesApi:
    """SES (v1 Query API) `SendEmail`."""

    def __init__(self, client: QueryClient, endpoint: Endpoint) -> None:
        self.client = client
        self.endpoint = endpoint

    async def send_email(
        self, *, source: str, to: str, subject: str, text: str, html: str | None
    ) -> str:
        """Send one UTF-8 email with a text and optionally an HTML body; SES's message id."""
        params = {
            "Source": source,
            "Destination.ToAddresses.member.1": to,
            "Message.Subject.Data": subject,
            "Message.Subject.Charset": "UTF-8",
            "Message.Body.Text.Data": text,
            "Message.Body.Text.Charset": "UTF-8",
        }
        if html:
            params["Message.Body.Html.Data"] = html
            params["Message.Body.Html.Charset"] = "UTF-8"
        result = await self.client.call(self.endpoint, "SendEmail", SES_API_VERSION, params)
        return _child(result, "MessageId") or ""


@dataclass(frozen=True)
class BatchEntry:
    """One message of a `PublishBatch`, with string message attributes."""

    id: str
    message: str
    attributes: Mapping[str, str]


@dataclass(frozen=True)
class BatchFailure:
    """An entry SNS did not publish."""

    id: str
    code: str
    message: str


@dataclass(frozen=True)
class BatchAnswer:
    """What SNS did with each entry of a batch: (id, message id) published, the rest failed."""

    published: list[tuple[str, str]]
    failed: list[BatchFailure]


class SnsApi:
    """SNS `Publish` (to a device endpoint) and `PublishBatch` (to a topic)."""

    def __init__(self, client: QueryClient, endpoint: Endpoint) -> None:
        self.client = client
        self.endpoint = endpoint

    async def publish(self, *, target_arn: str, message: str, structure: str | None) -> str:
        """Publish one message to an endpoint or topic; SNS's message id."""
        params = {"TargetArn": target_arn, "Message": message}
        if structure:
            params["MessageStructure"] = structure
        result = await self.client.call(self.endpoint, "Publish", SNS_API_VERSION, params)
        return _child(result, "MessageId") or ""

    async def publish_batch(self, *, topic_arn: str, entries: Sequence[BatchEntry]) -> BatchAnswer:
        """Publish up to ten messages to a topic in one call."""
        params = {"TopicArn": topic_arn}
        for index, entry in enumerate(entries, start=1):
            prefix = f"PublishBatchRequestEntries.member.{index}"
            params[f"{prefix}.Id"] = entry.id
            params[f"{prefix}.Message"] = entry.message
            for number, (name, value) in enumerate(entry.attributes.items(), start=1):
                attribute = f"{prefix}.MessageAttributes.entry.{number}"
                params[f"{attribute}.Name"] = name
                params[f"{attribute}.Value.DataType"] = "String"
                params[f"{attribute}.Value.StringValue"] = value
        result = await self.client.call(self.endpoint, "PublishBatch", SNS_API_VERSION, params)
        published = [
            (_child(member, "Id") or "", _child(member, "MessageId") or "")
            for member in result.iterfind("{*}Successful/{*}member")
        ]
        failed = [
            BatchFailure(
                id=_child(member, "Id") or "",
                code=_child(member, "Code") or "",
                message=_child(member, "Message") or "",
            )
            for member in result.iterfind("{*}Failed/{*}member")
        ]
        return BatchAnswer(published, failed)
