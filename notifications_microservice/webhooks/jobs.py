"""Background job: seal the signing secrets still stored in clear (rows from before 0004)."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from micropay_common.jobs import run_periodically
from notifications_microservice.state import NotificationsState
from notifications_microservice.webhooks import service
from notifications_microservice.webhooks.secrets import WebhookSecrets

logger = logging.getLogger("micropay.notifications.webhooks")

SEAL_BATCH = 50
# Rows in clear appear only from a release before 0004 still running during a rolling
# deployment; a minute is soon enough, and the query is an index probe that finds nothing.
SEAL_INTERVAL_SECONDS = 60.0


async def seal_legacy_secrets(
    sessionmaker: async_sessionmaker[AsyncSession], secrets_box: WebhookSecrets, limit: int
) -> int:
    """Seal up to `limit` secrets stored in clear, each in its own transaction; how many.

    No transaction stays open while KMS is called: the rows are read, sealed, then each is
    written only if its secret is still the one sealed, so replicas doing this at once (or
    the previous release writing meanwhile) do no harm.
    """
    async with sessionmaker() as session:
        legacy = await service.legacy_secrets(session, limit)
    sealed = 0
    for endpoint_id, secret in legacy:
        envelope = await secrets_box.seal(endpoint_id, secret)
        async with sessionmaker() as session, session.begin():
            sealed += await service.store_sealed_secret(session, endpoint_id, secret, envelope)
    return sealed


async def legacy_secret_sealing_job(app: FastAPI) -> None:
    """From start-up on, every minute, seal the signing secrets still stored in clear."""
    state = NotificationsState.of(app)

    async def seal() -> bool:
        sealed = await seal_legacy_secrets(state.sessionmaker, state.webhook_secrets, SEAL_BATCH)
        if sealed:
            logger.info("sealed the signing secrets of %d webhook endpoints", sealed)
        return sealed >= SEAL_BATCH

    await run_periodically("webhook secret sealing", seal, interval_seconds=SEAL_INTERVAL_SECONDS)
