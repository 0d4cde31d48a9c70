"""The delivery worker's own SES and SNS client: the requests are the ones botocore would build
and sign, and AWS's answers become what boto3 gives (a message id, a ClientError by code)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError
from botocore.serialize import create_serializer
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from micropay_common.metrics import AWS_SECONDS, AwsCallMetrics
from micropay_testing.apps import serve_http
from micropay_testing.processes import free_port
from notifications_microservice.delivery.aws_query import (
    BatchEntry,
    CredentialSource,
    Endpoint,
    QueryClient,
    SesApi,
    SnsApi,
)
from notifications_microservice.tests.helpers import emails_to, topic_publishes
from stack.bootstrap import AwsResources

REGION = "eu-west-1"
KEY = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "a-session-token")


def botocore_form(service: str, operation: str, params: dict[str, Any]) -> dict[str, list[str]]:
    """The form body botocore's own Query serializer makes for `operation`."""
    model = boto3.session.Session().client(service, region_name=REGION)._service_model
    request = create_serializer("query").serialize_to_request(
        params, model.operation_model(operation)
    )
    # The serializer leaves the form as a dict; botocore url-encodes it when it sends.
    return {name: [str(value)] for name, value in request["body"].items()}


class Recorder:
    """An AWS stand-in that keeps each request and answers with a scripted document."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.answer: tuple[int, str] = (200, "")

    async def handle(self, request: Request) -> Response:
        self.requests.append((str(request.url), dict(request.headers), await request.body()))
        status, document = self.answer
        return Response(document, status_code=status, media_type="text/xml")

    def form(self, index: int = -1) -> dict[str, list[str]]:
        return parse_qs(self.requests[index][2].decode())


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[Recorder, str]]:
    keeper = Recorder()
    app = Starlette(routes=[Route("/", keeper.handle, methods=["POST"])])
    async with serve_http(app) as url:
        yield keeper, url


def endpoint(url: str, service: str) -> Endpoint:
    return Endpoint.of(boto3.client(service, region_name=REGION, endpoint_url=url))


@pytest.fixture
async def client() -> AsyncIterator[QueryClient]:
    query = QueryClient(CredentialSource(KEY), timeout_seconds=2.0, connections=4)
    yield query
    await query.aclose()


SENT = (
    "<SendEmailResponse xmlns='http://ses.amazonaws.com/doc/2010-12-01/'><SendEmailResult>"
    "<MessageId>0100-abc</MessageId></SendEmailResult></SendEmailResponse>"
)


async def test_send_email_is_the_request_botocore_builds_and_signs(recorder, client) -> None:
    keeper, url = recorder
    keeper.answer = (200, SENT)
    ses = SesApi(client, endpoint(url, "ses"))
    message_id = await ses.send_email(
        source="MicroPay <no-reply@example.com>",
        to="ana+1@example.com",
        subject="Ünïcode & more",
        text="Hello = 1 + 1",
        html="<p>Hello</p>",
    )
    assert message_id == "0100-abc"
    expected = botocore_form(
        "ses",
        "SendEmail",
        {
            "Source": "MicroPay <no-reply@example.com>",
            "Destination": {"ToAddresses": ["ana+1@example.com"]},
            "Message": {
                "Subject": {"Data": "Ünïcode & more", "Charset": "UTF-8"},
                "Body": {
                    "Text": {"Data": "Hello = 1 + 1", "Charset": "UTF-8"},
                    "Html": {"Data": "<p>Hello</p>", "Charset": "UTF-8"},
                },
            },
        },
    )
    assert keeper.form() == expected

    # The request as it arrived (aiohttp's own Host header included) carries a valid signature.
    received_url, headers, body = keeper.requests[-1]
    assert headers["x-amz-security-token"] == "a-session-token"
    signed = headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    assert signed == ["content-type", "host", "x-amz-date", "x-amz-security-token"]
    request = AWSRequest(
        method="POST", url=received_url, data=body, headers={h: headers[h] for h in signed}
    )
    request.context["timestamp"] = headers["x-amz-date"]
    signer = SigV4Auth(KEY, "ses", REGION)
    canonical = signer.canonical_request(request)
    signature = signer.signature(signer.string_to_sign(request, canonical), request)
    assert headers["authorization"].endswith(f"Signature={signature}")
    assert f"/{REGION}/ses/aws4_request" in headers["authorization"]


async def test_publish_and_publish_batch_are_the_requests_botocore_builds(recorder, client) -> None:
    keeper, url = recorder
    sns = SnsApi(client, endpoint(url, "sns"))
    keeper.answer = (
        200,
        "<PublishResponse><PublishResult><MessageId>m-1</MessageId></PublishResult>"
        "</PublishResponse>",
    )
    arn = "arn:aws:sns:eu-west-1:123456789012:endpoint/GCM/app/1"
    assert await sns.publish(target_arn=arn, message='{"default": "x"}', structure="json") == "m-1"
    assert keeper.form() == botocore_form(
        "sns",
        "Publish",
        {"TargetArn": arn, "Message": '{"default": "x"}', "MessageStructure": "json"},
    )

    keeper.answer = (
        200,
        "<PublishBatchResponse><PublishBatchResult>"
        "<Successful><member><Id>0</Id><MessageId>m-0</MessageId></member></Successful>"
        "<Failed><member><Id>1</Id><Code>InternalError</Code><Message>try again</Message>"
        "<SenderFault>false</SenderFault></member></Failed>"
        "</PublishBatchResult></PublishBatchResponse>",
    )
    topic = "arn:aws:sns:eu-west-1:123456789012:micropay-sns"
    entries = [
        BatchEntry("0", "first", {"user_id": "u-1", "event": "transfer.completed"}),
        BatchEntry("1", "second", {"user_id": "u-2", "event": "transfer.completed"}),
    ]
    answer = await sns.publish_batch(topic_arn=topic, entries=entries)
    assert answer.published == [("0", "m-0")]
    assert [(f.id, f.code, f.message) for f in answer.failed] == [
        ("1", "InternalError", "try again")
    ]
    attributes = {
        "user_id": {"DataType": "String", "StringValue": "u-1"},
        "event": {"DataType": "String", "StringValue": "transfer.completed"},
    }
    assert keeper.form() == botocore_form(
        "sns",
        "PublishBatch",
        {
            "TopicArn": topic,
            "PublishBatchRequestEntries": [
                {"Id": "0", "Message": "first", "MessageAttributes": attributes},
                {
                    "Id": "1",
                    "Message": "second",
                    "MessageAttributes": {
                        **attributes,
                        "user_id": {"DataType": "String", "StringValue": "u-2"},
                    },
                },
            ],
        },
    )


async def test_an_answer_that_arrives_in_many_pieces_is_read_whole(recorder, client) -> None:
    keeper, url = recorder
    # Far larger than one read of the socket: the document is parsed only once it is whole.
    padding = " " * 300_000
    keeper.answer = (200, SENT.replace("<MessageId>", f"{padding}<MessageId>"))
    ses = SesApi(client, endpoint(url, "ses"))
    message_id = await ses.send_email(
        source="a@example.com", to="b@example.com", subject="s", text="t", html=None
    )
    assert message_id == "0100-abc"


@pytest.mark.parametrize(
    ("status", "document", "code", "message"),
    [
        (
            400,
            "<ErrorResponse xmlns='http://ses.amazonaws.com/doc/2010-12-01/'><Error>"
            "<Type>Sender</Type><Code>MessageRejected</Code><Message>Email address is not "
            "verified.</Message></Error><RequestId>r</RequestId></ErrorResponse>",
            "MessageRejected",
            "Email address is not verified.",
        ),
        (503, "<html>Service Unavailable</html>", "503", "<html>Service Unavailable</html>"),
        (500, "not xml at all", "500", "not xml at all"),
        (
            400,
            "<!DOCTYPE x [<!ENTITY a 'aaaa'>]><ErrorResponse><Error><Code>&a;</Code></Error>"
            "</ErrorResponse>",
            "400",
            "<!DOCTYPE x",
        ),
    ],
)
async def test_an_error_answer_is_the_client_error_boto3_raises(
    recorder, client, status: int, document: str, code: str, message: str
) -> None:
    keeper, url = recorder
    keeper.answer = (status, document)
    with pytest.raises(ClientError) as raised:
        await SesApi(client, endpoint(url, "ses")).send_email(
            source="a@example.com", to="b@example.com", subject="s", text="t", html=None
        )
    error = raised.value.response["Error"]
    assert error["Code"] == code
    assert error["Message"].startswith(message)
    assert raised.value.operation_name == "SendEmail"
    assert "Message.Body.Html.Data" not in keeper.form()


async def test_no_answer_and_no_credentials_are_botocore_errors() -> None:
    unreachable = endpoint(f"http://127.0.0.1:{free_port()}", "ses")
    query = QueryClient(CredentialSource(KEY), timeout_seconds=1.0, connections=1)
    try:
        with pytest.raises(EndpointConnectionError):
            await SesApi(query, unreachable).send_email(
                source="a@example.com", to="b@example.com", subject="s", text="t", html=None
            )
    finally:
        await query.aclose()
    anonymous = QueryClient(CredentialSource(None), timeout_seconds=1.0, connections=1)
    with pytest.raises(NoCredentialsError):
        await SesApi(anonymous, unreachable).send_email(
            source="a@example.com", to="b@example.com", subject="s", text="t", html=None
        )


async def test_against_moto_the_sends_arrive_and_are_timed(
    aws: AwsResources, moto_endpoint: str
) -> None:
    session = boto3.session.Session(region_name=aws.region)
    registry = CollectorRegistry()
    metrics = AwsCallMetrics(registry)
    query = QueryClient(
        CredentialSource(session.get_credentials()),
        timeout_seconds=2.0,
        connections=2,
        metrics=metrics,
    )
    address = f"q-{uuid.uuid4().hex[:10]}@example.com"
    try:
        ses = SesApi(query, Endpoint.of(session.client("ses", endpoint_url=moto_endpoint)))
        sns = SnsApi(query, Endpoint.of(session.client("sns", endpoint_url=moto_endpoint)))
        assert await ses.send_email(
            source=aws.ses_sender, to=address, subject="Hi", text="text", html="<b>html</b>"
        )
        answer = await sns.publish_batch(
            topic_arn=aws.sns_topic_arn,
            entries=[BatchEntry("0", '{"a": 1}', {"user_id": "q-user", "event": "e"})],
        )
        with pytest.raises(ClientError) as rejected:
            await ses.send_email(
                source="not-verified@nowhere.example", to=address, subject="x", text="x", html=None
            )
    finally:
        await query.aclose()
    assert len(answer.published) == 1
    assert not answer.failed
    assert rejected.value.response["Error"]["Code"] == "MessageRejected"
    (email,) = emails_to(moto_endpoint, address)
    assert email["subject"] == "Hi"
    assert len(topic_publishes(moto_endpoint, aws.sns_topic_arn, "q-user")) == 1

    def count(service: str, operation: str, outcome: str) -> float | None:
        labels = {"service": service, "operation": operation, "outcome": outcome}
        return registry.get_sample_value(f"{AWS_SECONDS}_count", labels)

    assert count("ses", "SendEmail", "ok") == 1
    assert count("ses", "SendEmail", "error") == 1
    assert count("sns", "PublishBatch", "ok") == 1
