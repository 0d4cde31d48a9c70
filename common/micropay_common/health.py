"""Liveness, readiness (database) and Prometheus metrics endpoints."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from micropay_common.db import ping
from micropay_common.errors import database_unavailable_response
from micropay_common.state import AppState

logger = logging.getLogger("micropay.health")
router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live", summary="The process is up")
async def live() -> dict[str, str]:
    """Answer as long as the event loop runs."""
    return {"status": "ok"}


@router.get(
    "/ready",
    summary="The service can serve requests (its database answers)",
    responses={503: {"description": "The database is not reachable"}},
)
async def ready(request: Request) -> JSONResponse:
    """200 when the database answers within two seconds, else 503 problem+json."""
    try:
        await asyncio.wait_for(ping(AppState.of(request.app).engine), timeout=2.0)
    except Exception as exc:
        logger.warning("readiness check failed: %r", exc)
        return database_unavailable_response(request.url.path)
    return JSONResponse({"status": "ok", "database": "ok"})
