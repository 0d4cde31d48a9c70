"""python -m stack.openapi: the services' public OpenAPI documents behind the TypeScript SDK."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from micropay_common.services import SERVICES, ServiceName
from stack.openapi import OPENAPI_DIR, main, public_document


@pytest.mark.parametrize("service", list(SERVICES))
def test_documents_hold_only_what_the_gateway_routes(service: ServiceName) -> None:
    paths = public_document(service)["paths"]
    prefix = SERVICES[service].prefix
    assert paths
    for path in paths:
        assert path == prefix or path.startswith(prefix + "/"), path
        assert "/internal" not in path
    assert "/health/ready" not in paths


def test_the_browser_session_routes_are_in_the_auth_document() -> None:
    paths = public_document(ServiceName.AUTH)["paths"]
    assert set(paths["/auth/session"]) == {"post", "delete"}
    refresh = paths["/auth/session/refresh"]["post"]
    assert {p["name"] for p in refresh["parameters"]} == {"X-CSRF-Token"}


def test_check_fails_on_a_stale_document_and_passes_once_written(tmp_path: Path) -> None:
    assert main(["--check", "--out", str(tmp_path)]) == 1
    assert main(["--out", str(tmp_path)]) == 0
    assert main(["--check", "--out", str(tmp_path)]) == 0
    auth = tmp_path / "auth.json"
    document = json.loads(auth.read_text())
    del document["paths"]["/auth/session"]
    auth.write_text(json.dumps(document))
    assert main(["--check", "--out", str(tmp_path)]) == 1


def test_the_committed_documents_are_current() -> None:
    assert main(["--check", "--out", str(OPENAPI_DIR)]) == 0
