"""gateway/nginx.conf in a real nginx, in front of real HTTP servers standing in for services.

The auth stand-in answers GET /auth/verify the way the contract says the auth service will
(200 with X-User-* for a good token, 401 otherwise); the auth service itself only gains that
route with the auth issue, so the gateway's rules are proven here against the contract.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from micropay_testing.gateway import Response, request, requires_nginx
from stack.launcher import free_port
from stack.tests.upstreams import GOOD_TOKEN, MISSING_ROUTE_TOKEN, USER, EchoUpstream

pytestmark = [pytest.mark.nginx, requires_nginx]

GOOD = {"Authorization": f"Bearer {GOOD_TOKEN}"}
FORGED = {
    "X-User-Id": "forged-user",
    "X-User-Email": "mallory@example.com",
    "X-User-Groups": "admins",
}
PROBLEM_JSON = "application/problem+json"


@pytest.fixture(scope="module")
def running_upstreams() -> Iterator[dict[str, EchoUpstream]]:
    """Running stand-ins for auth, payment and transactions (notifications is down)."""
    servers = {
        "auth": EchoUpstream("auth", verifies_tokens=True).start(),
        "payment": EchoUpstream("payment").start(),
        "transactions": EchoUpstream("transactions").start(),
    }
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture
def upstreams(running_upstreams: dict[str, EchoUpstream]) -> dict[str, EchoUpstream]:
    """The stand-ins, with what they received before this test forgotten."""
    for server in running_upstreams.values():
        server.received.clear()
    return running_upstreams


INDEX_HTML = b"<!doctype html><title>MicroPay wallet</title>"
APP_JS = b"console.log('wallet');"
STRIPE_ORIGIN = "https://stripe.example"
WEB_VALUES = {
    "STRIPE_JS_URL": f"{STRIPE_ORIGIN}/v3/",
    "STRIPE_PUBLISHABLE_KEY": "pk_test_gateway",
    "STRIPE_JS_ORIGINS": STRIPE_ORIGIN,
}


@pytest.fixture(scope="module")
def web_root() -> Iterator[Path]:
    """A built app as web/dist holds one: index.html and a hashed asset."""
    # Not under pytest's private temporary directory: nginx's workers run as another user
    # when the tests run as root, and must read the files.
    root = Path(tempfile.mkdtemp(prefix="micropay-web-"))
    root.chmod(0o755)
    (root / "index.html").write_bytes(INDEX_HTML)
    (root / "assets").mkdir(mode=0o755)
    (root / "assets" / "index-abc123.js").write_bytes(APP_JS)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def gateway(
    running_upstreams: dict[str, EchoUpstream],
    start_gateway: Callable[..., int],
    web_root: Path,
) -> int:
    """Port of a gateway whose notifications upstream has nothing listening."""
    ports = {name: server.port for name, server in running_upstreams.items()}
    ports["notifications"] = free_port()
    return start_gateway(ports, {**WEB_VALUES, "WEB_ROOT": str(web_root)})


def assert_problem(answer: Response, status: int, type_: str | None = None) -> dict[str, object]:
    assert answer.status == status, (answer.status, answer.body)
    assert answer.header("Content-Type") == PROBLEM_JSON
    body: dict[str, object] = answer.json()
    assert body["status"] == status
    if type_ is not None:
        assert body["type"] == type_
    assert body["request_id"] == answer.header("X-Request-ID")
    return body


def service_requests(upstreams: dict[str, EchoUpstream]) -> list[str]:
    """Paths the upstreams received, except the access checks."""
    return [
        f"{name} {received.method} {received.path}"
        for name, server in upstreams.items()
        for received in server.received
        if received.path != "/auth/verify"
    ]


def verify_calls(upstreams: dict[str, EchoUpstream]) -> int:
    return sum(1 for r in upstreams["auth"].received if r.path == "/auth/verify")


def test_protected_route_without_token_is_refused_by_the_gateway(
    gateway: int, upstreams: dict[str, EchoUpstream]
) -> None:
    answer = request(gateway, "GET", "/payments")
    assert_problem(answer, 401, "invalid_token")
    assert answer.header_values("WWW-Authenticate") == ["Bearer"]
    assert service_requests(upstreams) == []


def test_token_refused_by_the_check_is_401_problem(
    gateway: int, upstreams: dict[str, EchoUpstream]
) -> None:
    answer = request(gateway, "POST", "/transactions/transfers", {"Authorization": "Bearer bad"})
    body = assert_problem(answer, 401, "invalid_token")
    assert body["title"] == "Unauthorized"
    assert answer.header_values("WWW-Authenticate") == ["Bearer"]
    assert verify_calls(upstreams) == 1
    assert service_requests(upstreams) == []


def test_good_token_forwards_the_checked_identity_not_the_forged_one(
    gateway: int, upstreams: dict[str, EchoUpstream]
) -> None:
    answer = request(gateway, "GET", "/payments/pay_123?expand=x", {**GOOD, **FORGED})
    assert answer.status == 200
    [received] = upstreams["payment"].received
    assert received.path == "/payments/pay_123?expand=x"
    assert received.headers["x-user-id"] == [USER["X-User-Id"]]
    assert received.headers["x-user-email"] == [USER["X-User-Email"]]
    assert received.headers["x-user-groups"] == [USER["X-User-Groups"]]
    # Services verify the token again themselves.
    assert received.header("Authorization") == f"Bearer {GOOD_TOKEN}"
    assert received.header("X-Forwarded-For") == "127.0.0.1"
    assert received.header("X-Forwarded-Proto") == "http"

    [check] = [r for r in upstreams["auth"].received if r.path == "/auth/verify"]
    assert check.method == "GET"
    assert check.header("Authorization") == f"Bearer {GOOD_TOKEN}"
    assert check.header("X-Original-URI") == "/payments/pay_123?expand=x"
    assert check.header("X-User-Id") is None
    assert check.body == b""


def test_list_routes_without_trailing_slash_are_protected(
    gateway: int, upstreams: dict[str, EchoUpstream]
) -> None:
    assert request(gateway, "GET", "/transactions").status == 401
    answer = request(gateway, "GET", "/transactions", GOOD)
    assert answer.status == 200
    assert answer.json()["path"] == "/transactions"


@pytest.mark.parametrize(
    ("method", "path", "service"),
    [
        ("POST", "/auth/register", "auth"),
        ("POST", "/auth/login", "auth"),
        ("POST", "/auth/refresh", "auth"),
        ("POST", "/auth/confirm", "auth"),
        ("POST", "/auth/resend-confirmation", "auth"),
        ("POST", "/payments/webhooks/stripe", "payment"),
        ("POST", "/payments/webhooks/paypal", "payment"),
    ],
)
def test_public_routes_skip_the_check_and_drop_forged_identity(
    gateway: int, upstreams: dict[str, EchoUpstream], method: str, path: str, service: str
) -> None:
    answer = request(gateway, method, path, {**FORGED, "Content-Type": "application/json"}, b"{}")
    assert answer.status == 200, answer.body
    assert verify_calls(upstreams) == 0
    [received] = upstreams[service].received
    assert (received.method, received.path, received.body) == (method, path, b"{}")
    for name in FORGED:
        assert received.header(name) is None


def test_other_auth_routes_need_a_token(gateway: int, upstreams: dict[str, EchoUpstream]) -> None:
    assert request(gateway, "POST", "/auth/logout").status == 401
    assert request(gateway, "GET", "/auth/me").status == 401
    assert request(gateway, "GET", "/auth/me", GOOD).json()["path"] == "/auth/me"


@pytest.mark.parametrize(
    "path",
    [
        "/internal/events",
        "/Internal/events",
        "/payments/../internal/events",
        "/payments/./../internal/events",
        "/payments/%2e%2e/internal/events",
        "/payments/%2E%2E/internal/events",
        "/payments/..%2finternal/events",
        "/payments/%2finternal/events",
        "/payments//internal/events",
        "/payments/internal/events",
        "/%69nternal/events",
        "/payments/%252e%252e/internal/events",
    ],
)
def test_internal_endpoints_are_never_routed(
    gateway: int, upstreams: dict[str, EchoUpstream], path: str
) -> None:
    for method in ("GET", "POST"):
        answer = request(gateway, method, path, GOOD, b"{}")
        assert answer.status in (400, 404), (path, answer.status)
        assert answer.header("Content-Type") == PROBLEM_JSON
    assert service_requests(upstreams) == []
    assert verify_calls(upstreams) == 0


@pytest.mark.parametrize("path", ["/nope", "/health/ready", "/metrics", "/paymentsx", "/x.js"])
def test_unknown_paths_are_404_problem(
    gateway: int, upstreams: dict[str, EchoUpstream], path: str
) -> None:
    assert_problem(request(gateway, "GET", path, GOOD), 404, "not_found")
    assert service_requests(upstreams) == []


def test_request_id_is_kept_forwarded_and_returned(
    gateway: int, upstreams: dict[str, EchoUpstream]
) -> None:
    answer = request(gateway, "GET", "/payments", {**GOOD, "X-Request-ID": "client-id-1"})
    assert answer.header_values("X-Request-ID") == ["client-id-1"]
    [received] = upstreams["payment"].received
    assert received.headers["x-request-id"] == ["client-id-1"]
    [check] = [r for r in upstreams["auth"].received if r.path == "/auth/verify"]
    assert check.header("X-Request-ID") == "client-id-1"


@pytest.mark.parametrize("supplied", [None, "has spaces", "x" * 200])
def test_request_id_is_generated_when_missing_or_unsafe(
    gateway: int, upstreams: dict[str, EchoUpstream], supplied: str | None
) -> None:
    headers = dict(GOOD)
    if supplied is not None:
        headers["X-Request-ID"] = supplied
    answer = request(gateway, "GET", "/payments", headers)
    [generated] = answer.header_values("X-Request-ID")
    assert generated != supplied
    assert len(generated) == 32
    assert upstreams["payment"].received[0].headers["x-request-id"] == [generated]


TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_a_well_formed_traceparent_is_forwarded_with_its_tracestate(
    gateway: int, upstreams: dict[str, EchoUpstream]
) -> None:
    headers = {**GOOD, "traceparent": TRACEPARENT, "tracestate": "vendor=abc"}
    answer = request(gateway, "GET", "/payments", headers)
    assert answer.status == 200
    [received] = upstreams["payment"].received
    assert received.headers["traceparent"] == [TRACEPARENT]
    assert received.headers["tracestate"] == ["vendor=abc"]
    [check] = [r for r in upstreams["auth"].received if r.path == "/auth/verify"]
    assert check.header("traceparent") == TRACEPARENT
    assert check.header("tracestate") == "vendor=abc"


@pytest.mark.parametrize(
    "supplied",
    ["garbage", TRACEPARENT.upper(), TRACEPARENT + "-extra", "00-" + "0" * 31 + "-1-01"],
)
def test_a_malformed_traceparent_is_dropped_with_its_tracestate(
    gateway: int, upstreams: dict[str, EchoUpstream], supplied: str
) -> None:
    headers = {**GOOD, "traceparent": supplied, "tracestate": "vendor=abc"}
    answer = request(gateway, "GET", "/payments", headers)
    assert answer.status == 200
    [received] = upstreams["payment"].received
    assert received.header("traceparent") is None
    assert received.header("tracestate") is None


def test_gateway_errors_carry_the_request_id(gateway: int) -> None:
    answer = request(gateway, "GET", "/payments", {"X-Request-ID": "abc-123"})
    assert_problem(answer, 401)
    assert answer.header_values("X-Request-ID") == ["abc-123"]


def test_service_down_is_503_problem(gateway: int) -> None:
    answer = request(gateway, "GET", "/notifications", GOOD)
    body = assert_problem(answer, 503, "service_unavailable")
    assert "html" not in str(body).lower()
    assert answer.header("Retry-After") == "2"


def test_check_answering_neither_2xx_nor_401_403_is_a_problem_not_an_error_page(
    gateway: int, upstreams: dict[str, EchoUpstream]
) -> None:
    # What the gateway does in front of an auth service without /auth/verify (404).
    answer = request(
        gateway, "GET", "/payments", {"Authorization": f"Bearer {MISSING_ROUTE_TOKEN}"}
    )
    assert_problem(answer, 503, "service_unavailable")
    assert service_requests(upstreams) == []


def test_auth_service_down_is_a_problem_not_an_error_page(
    upstreams: dict[str, EchoUpstream], start_gateway: Callable[[Mapping[str, int]], int]
) -> None:
    ports = {name: server.port for name, server in upstreams.items()}
    ports["auth"] = ports["notifications"] = free_port()
    port = start_gateway(ports)
    assert_problem(request(port, "GET", "/payments", GOOD), 503, "service_unavailable")
    assert_problem(request(port, "POST", "/auth/login", body=b"{}"), 503, "service_unavailable")
    assert service_requests(upstreams) == []


def test_docs_are_served_through_the_gateway_without_a_token(gateway: int) -> None:
    docs = request(gateway, "GET", "/payments/docs")
    assert docs.status == 200
    assert (docs.header("Content-Type") or "").startswith("text/html")
    page = docs.body.decode()
    assert "url: '/payments/openapi.json'" in page
    assert "'/payments/docs/oauth2-redirect'" in page

    schema = request(gateway, "GET", "/payments/openapi.json")
    assert schema.status == 200
    assert schema.json()["service"] == "payment"
    for prefix, service in [("/auth", "auth"), ("/transactions", "transactions")]:
        assert request(gateway, "GET", f"{prefix}/openapi.json").json()["service"] == service


def test_body_size_is_limited(gateway: int, upstreams: dict[str, EchoUpstream]) -> None:
    answer = request(gateway, "POST", "/payments", GOOD, b"x" * (1024 * 1024 + 1))
    assert_problem(answer, 413, "payload_too_large")
    assert service_requests(upstreams) == []


def test_no_server_version_is_disclosed(gateway: int) -> None:
    assert request(gateway, "GET", "/nope").header("Server") == "nginx"


@pytest.mark.parametrize("path", ["/auth/register", "/auth/confirm", "/auth/resend-confirmation"])
def test_sign_up_and_confirmation_are_rate_limited_per_address(
    running_upstreams: dict[str, EchoUpstream],
    start_gateway: Callable[[Mapping[str, int]], int],
    path: str,
) -> None:
    # A gateway of its own: the limit's counts live in this nginx's memory, not the shared one.
    ports = {name: server.port for name, server in running_upstreams.items()}
    ports["notifications"] = free_port()
    port = start_gateway(ports)
    running_upstreams["auth"].received.clear()
    json_body = {"Content-Type": "application/json"}

    statuses = [
        request(port, "POST", path, json_body, b"{}", source="127.0.0.2").status for _ in range(15)
    ]
    assert statuses[:11] == [200] * 11, statuses
    refused = request(port, "POST", path, json_body, b"{}", source="127.0.0.2")
    body = assert_problem(refused, 429, "rate_limited")
    assert body["title"] == "Too many requests"
    assert refused.header("Retry-After") == "2"
    assert 429 in statuses
    # Only the answered requests reached the auth service.
    assert len(running_upstreams["auth"].received) == statuses.count(200)

    # Another address has its own allowance; login is not limited at all.
    assert request(port, "POST", path, json_body, b"{}", source="127.0.0.3").status == 200
    assert request(port, "POST", "/auth/login", json_body, b"{}", source="127.0.0.2").status == 200


# --- the wallet web app ----------------------------------------------------------------------
BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


def assert_app_headers(answer: Response) -> None:
    """The app's security headers: CSP (self, the API, Stripe.js), nosniff, referrer, framing."""
    csp = answer.header("Content-Security-Policy")
    assert csp is not None
    directives = {}
    for part in filter(None, (item.strip() for item in csp.split(";"))):
        name, _, value = part.partition(" ")
        directives[name] = value
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == f"'self' {STRIPE_ORIGIN}"
    assert directives["connect-src"] == f"'self' {STRIPE_ORIGIN}"
    assert directives["frame-src"] == STRIPE_ORIGIN
    assert directives["frame-ancestors"] == "'none'"
    assert directives["object-src"] == "'none'"
    assert "unsafe-eval" not in csp
    assert answer.header("X-Content-Type-Options") == "nosniff"
    assert answer.header("Referrer-Policy") == "strict-origin-when-cross-origin"
    assert answer.header("X-Request-ID")


@pytest.mark.parametrize("headers", [BROWSER, {}])
def test_the_app_is_served_at_the_root_with_its_security_headers(
    gateway: int, upstreams: dict[str, EchoUpstream], headers: dict[str, str]
) -> None:
    answer = request(gateway, "GET", "/", headers)
    assert answer.status == 200
    assert answer.body == INDEX_HTML
    assert answer.header("Content-Type") == "text/html"
    assert answer.header("Cache-Control") == "no-cache"
    assert answer.header("X-Frame-Options") == "DENY"
    assert_app_headers(answer)
    assert service_requests(upstreams) == []


def test_assets_are_javascript_cached_for_good(gateway: int) -> None:
    answer = request(gateway, "GET", "/assets/index-abc123.js")
    assert answer.status == 200
    assert answer.body == APP_JS
    # Module scripts load only with a JavaScript type (nosniff enforces it).
    assert answer.header("Content-Type") == "application/javascript"
    assert answer.header("Cache-Control") == "public, max-age=31536000, immutable"
    assert_app_headers(answer)
    assert_problem(request(gateway, "GET", "/assets/missing.js"), 404, "not_found")


def test_the_app_configuration_comes_from_the_gateway(gateway: int) -> None:
    answer = request(gateway, "GET", "/config.json")
    assert answer.status == 200
    assert answer.header("Content-Type") == "application/json"
    assert json.loads(answer.body) == {
        "stripeJsUrl": f"{STRIPE_ORIGIN}/v3/",
        "stripePublishableKey": "pk_test_gateway",
    }


def test_page_urls_fall_back_to_the_app_for_browsers_only(gateway: int) -> None:
    page = request(gateway, "GET", "/wallet/history", BROWSER)
    assert page.status == 200
    assert page.body == INDEX_HTML
    assert_app_headers(page)
    assert_problem(request(gateway, "GET", "/wallet/history"), 404, "not_found")


@pytest.mark.parametrize("path", ["/auth/session", "/auth/session/refresh"])
def test_the_browser_session_routes_need_no_bearer(
    gateway: int, upstreams: dict[str, EchoUpstream], path: str
) -> None:
    answer = request(gateway, "POST", path, {"Cookie": "micropay_refresh=r"}, b"{}")
    assert answer.status == 200
    assert service_requests(upstreams) == [f"auth POST {path}"]
    assert verify_calls(upstreams) == 0
    # The session itself (sign-out's cookie clearing) is not a bearer route either; other
    # paths below /auth/session are.
    assert_problem(request(gateway, "GET", "/auth/session/other"), 401, "invalid_token")
