"""The OpenAPI document of a service says what its error handlers send: problem+json."""

from __future__ import annotations

from fastapi import APIRouter

from micropay_common.app import create_service_app
from micropay_common.errors import PROBLEM_JSON
from micropay_common.settings import ServiceSettings
from micropay_common.state import ServiceState


def test_error_responses_are_documented_as_problem_json() -> None:
    router = APIRouter()

    @router.get("/things/{thing_id}", responses={404: {"description": "No such thing"}})
    async def read_thing(thing_id: int, limit: int = 10) -> dict[str, int]:
        return {"id": thing_id, "limit": limit}

    app = create_service_app(
        settings_cls=ServiceSettings,
        state_cls=ServiceState,
        schema="things",
        title="things",
        description="A test app.",
        version="0",
        tags=[],
        routers=[router],
    )
    document = app.openapi()
    responses = document["paths"]["/things/{thing_id}"]["get"]["responses"]
    problem = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    assert responses["404"]["content"] == problem
    assert responses["422"]["content"] == problem
    assert list(responses["200"]["content"]) == ["application/json"]
    schemas = document["components"]["schemas"]
    assert schemas["Problem"]["required"] == ["type", "title", "status"]
    assert "HTTPValidationError" not in schemas
    assert app.openapi() is document
