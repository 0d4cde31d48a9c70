"""Alembic's environment: runs the history online (asyncpg) or writes it as SQL (offline).

The work is in migrations.runner; a connection handed over by `upgrade_database` (in
`config.attributes["connection"]`) is used as it is, otherwise DATABASE_URL (an admin URL) is.
"""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig

from alembic import context
from alembic.util import CommandError
from sqlalchemy import Connection

from migrations.runner import MigrationError, connect, run_offline, run_online

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


async def _run_with_database_url() -> None:
    url = os.environ.get("DATABASE_URL")
    if not url:
        raise CommandError("DATABASE_URL is not set: give the admin URL of the MicroPay database")
    try:
        async with connect(url) as connection:
            await connection.run_sync(lambda sync: run_online(sync))
            await connection.commit()
    except MigrationError as exc:  # the alembic command prints it as one line
        raise CommandError(str(exc)) from None


if context.is_offline_mode():
    run_offline()
elif isinstance(connection := config.attributes.get("connection"), Connection):
    run_online(connection)
else:
    asyncio.run(_run_with_database_url())
