"""A real HTTP stand-in in front of moto that makes chosen Cognito operations fail.

moto cannot throttle, fail with a 5xx, time out, reject a confirmation code or resend one, so
this proxy answers those operations the way Cognito documents (JSON error bodies botocore
parses for real) and forwards everything else to moto unchanged. It replaces only the
outside edge that no local stand-in covers; the service under test is not touched.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

TARGET_PREFIX = "AWSCognitoIdentityProviderService."


@dataclass(frozen=True)
class Fault:
    """How to answer one operation: an error (status, code, message), or success, or a stall."""

    status: int = 400
    code: str = ""
    message: str = ""
    delay_seconds: float = 0.0
    body: dict[str, object] | None = None


@dataclass
class CognitoFaults:
    """The proxy's state: which operations fail, and every operation it saw."""

    moto_url: str
    url: str = ""
    faults: dict[str, Fault] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)
    confirmation_code: str | None = None
    """When set, ConfirmSignUp with any other code is a CodeMismatchException (moto takes any)."""

    def app(self) -> Starlette:
        """The ASGI app to serve (with conftest's serve_http)."""
        client = httpx.AsyncClient(base_url=self.moto_url, timeout=30)

        async def handle(request: Request) -> Response:
            operation = request.headers.get("x-amz-target", "").removeprefix(TARGET_PREFIX)
            self.seen.append(operation)
            fault = self.faults.get(operation)
            if fault is None and operation == "ConfirmSignUp" and self.confirmation_code:
                sent = json.loads(await request.body()).get("ConfirmationCode")
                if sent != self.confirmation_code:
                    fault = Fault(400, "CodeMismatchException", "Invalid verification code.")
            if fault is not None:
                if fault.delay_seconds:
                    await asyncio.sleep(fault.delay_seconds)
                payload = (
                    fault.body
                    if fault.body is not None
                    else {"__type": fault.code, "message": fault.message}
                )
                return Response(
                    json.dumps(payload),
                    status_code=fault.status,
                    media_type="application/x-amz-json-1.1",
                    headers={"x-amzn-ErrorType": fault.code} if fault.code else None,
                )
            upstream = await client.request(
                request.method,
                request.url.path,
                params=request.query_params,
                headers={k: v for k, v in request.headers.items() if k.lower() not in ("host",)},
                content=await request.body(),
            )
            return Response(
                upstream.content,
                status_code=upstream.status_code,
                media_type=upstream.headers.get("content-type"),
            )

        return Starlette(routes=[Route("/{path:path}", handle, methods=["GET", "POST"])])
