"""Background jobs of the auth service."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from auth_microservice.sessions.service import purge_expired
from auth_microservice.state import AuthState
from auth_microservice.users.limits import purge_attempts
from micropay_common.jobs import run_periodically

logger = logging.getLogger("micropay.auth.jobs")


async def purge_job(app: FastAPI) -> None:
    """Delete expired deny-list rows and sign-ins, old login failures and sign-up attempts."""
    state = AuthState.of(app)

    async def purge() -> None:
        async with state.sessionmaker() as session, session.begin():
            purged = await purge_expired(session, state.settings)
            attempts = await purge_attempts(session, state.settings)
        if purged.revoked_tokens or purged.sessions or purged.login_failures or attempts:
            logger.info(
                "purged %d deny-list rows, %d sign-ins, %d login failures, %d sign-up attempts",
                purged.revoked_tokens,
                purged.sessions,
                purged.login_failures,
                attempts,
            )

    await run_periodically(
        "auth purge", purge, interval_seconds=state.settings.auth_purge_interval_seconds
    )
