"""Helpers of the tests that use the PayPal stand-in: its contract, and the buyer's browser."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jsonschema

from stack.paypal_server import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET

SPEC_DIR = Path(__file__).resolve().parent.parent / "stack" / "paypal" / "spec"
DOCUMENTS = ("checkout_orders_v2", "payments_payment_v2", "notifications_webhooks_v1")
CLIENT = (DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET)


@functools.cache
def document(name: str) -> dict[str, Any]:
    """One of PayPal's OpenAPI documents, as published."""
    loaded: dict[str, Any] = json.loads((SPEC_DIR / f"{name}.json").read_text())
    return loaded


def _operation(path: str, method: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The document and operation whose path template matches a concrete path."""
    for name in DOCUMENTS:
        doc = document(name)
        for template, operations in doc["paths"].items():
            pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
            if re.match(pattern, path) and method.lower() in operations:
                return doc, operations[method.lower()]
    raise AssertionError(f"{method} {path} is not in PayPal's documents")


def _schema(doc: dict[str, Any], content: dict[str, Any]) -> dict[str, Any]:
    schema = content["application/json"]["schema"]
    # Relative references (#/components/...) resolve against this root.
    return {**schema, "components": doc["components"]}


def _resolve(doc: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in item:
        _, _, *parts = item["$ref"].split("/")
        target: Any = doc
        for part in parts:
            target = target[part]
        item = target
    return item


def check_response(method: str, path: str, response: httpx.Response) -> dict[str, Any]:
    """The JSON body, after checking it against PayPal's schema for this path and status."""
    doc, operation = _operation(path, method)
    responses = operation["responses"]
    declared = responses.get(str(response.status_code)) or responses.get("default")
    assert declared is not None, f"{method} {path}: PayPal never answers {response.status_code}"
    declared = _resolve(doc, declared)
    body: dict[str, Any] = response.json()
    content = declared.get("content")
    if content and "application/json" in content:
        jsonschema.Draft202012Validator(_schema(doc, content)).validate(body)
    return body


def check_request(method: str, path: str, body: dict[str, Any]) -> None:
    """Check a request body against PayPal's schema for this path."""
    doc, operation = _operation(path, method)
    content = _resolve(doc, operation["requestBody"])["content"]
    jsonschema.Draft202012Validator(_schema(doc, content)).validate(body)


def check_component(name: str, component: str, body: dict[str, Any]) -> None:
    """Check a body against one named schema of a document (a webhook's resource)."""
    doc = document(name)
    schema = {"$ref": f"#/components/schemas/{component}", "components": doc["components"]}
    jsonschema.Draft202012Validator(schema).validate(body)


def buyer_forms(page: str) -> dict[str, tuple[str, dict[str, str]]]:
    """The approval page's forms by button id: (action, hidden fields)."""
    forms: dict[str, tuple[str, dict[str, str]]] = {}
    for match in re.finditer(r'<form method="post" action="([^"]+)">(.*?)</form>', page, re.S):
        action, inner = match.groups()
        fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', inner))
        button = re.search(r'<button type="submit" id="([^"]+)"', inner)
        assert button is not None, inner
        forms[button.group(1)] = (action, fields)
    return forms


async def buyer_chooses(approve_url: str, choice: str) -> httpx.URL:
    """Open the approval page as a browser would, press Approve or Cancel; where it sends us."""
    async with httpx.AsyncClient(timeout=30) as browser:
        page = await browser.get(approve_url)
        assert page.status_code == 200, page.text
        assert page.headers["content-type"].startswith("text/html")
        action, fields = buyer_forms(page.text)[choice]
        answer = await browser.post(httpx.URL(approve_url).join(action), data=fields)
    assert answer.status_code == 303, answer.text
    return httpx.URL(answer.headers["location"])


def query(url: httpx.URL) -> dict[str, str]:
    """A URL's query parameters (single values)."""
    return {key: values[0] for key, values in parse_qs(urlsplit(str(url)).query).items()}
