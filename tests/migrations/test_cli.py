"""`python -m migrations` (what `make migrate` runs) and the `alembic` command of developers."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from micropay_testing.database import TestDatabase
from micropay_testing.processes import free_port
from migrations import head_revision

NewDatabase = Callable[[], Awaitable[str]]
ROOT = Path(__file__).resolve().parents[2]


async def run(*args: str, database_url: str | None) -> subprocess.CompletedProcess[str]:
    """A command from the repository root with DATABASE_URL set to `database_url` (or unset)."""
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_upgrade_without_database_url_says_so_in_one_line() -> None:
    done = await run("-m", "migrations", "upgrade", database_url=None)
    assert done.returncode != 0
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1
    assert "DATABASE_URL is not set" in done.stderr


async def test_upgrade_of_an_unreachable_database_says_so_in_one_line() -> None:
    url = f"postgresql://admin:s3cret-pw@127.0.0.1:{free_port()}/micropay"
    done = await run("-m", "migrations", "upgrade", database_url=url)
    assert done.returncode != 0
    (line,) = done.stderr.strip().splitlines()
    assert "cannot reach the database at postgresql://admin:***@127.0.0.1:" in line
    assert "s3cret-pw" not in done.stderr


async def test_upgrade_migrates_and_says_to_which_revision(new_database: NewDatabase) -> None:
    url = await new_database()
    for _ in range(2):
        done = await run("-m", "migrations", "upgrade", database_url=url)
        assert done.returncode == 0, done.stderr
        assert f"revision {head_revision()}" in done.stdout


async def test_sql_prints_postgresql_sql() -> None:
    done = await run("-m", "migrations", "sql", database_url=None)
    assert done.returncode == 0, done.stderr
    assert done.stdout == (ROOT / "PostgreSQL.sql").read_text()


async def test_check_finds_the_models_and_the_migrations_in_agreement(
    database: TestDatabase,
) -> None:
    done = await run("-m", "migrations", "check", database_url=database.admin_url)
    assert done.returncode == 0, done.stderr
    assert "agree" in done.stdout


async def test_check_of_a_database_behind_the_history_asks_for_migrate(
    new_database: NewDatabase,
) -> None:
    done = await run("-m", "migrations", "check", database_url=await new_database())
    assert done.returncode != 0
    assert "run `make migrate` first" in done.stderr


async def test_alembic_check_through_alembic_ini(database: TestDatabase) -> None:
    done = await run("-m", "alembic", "check", database_url=database.admin_url)
    assert done.returncode == 0, done.stderr
    assert "No new upgrade operations detected" in done.stdout + done.stderr


async def test_alembic_revision_autogenerate_writes_nothing_when_models_and_migrations_agree(
    database: TestDatabase, tmp_path: Path
) -> None:
    # A copy of the history, so the repository's own is never written to.
    shutil.copytree(
        ROOT / "migrations", tmp_path / "history", ignore=shutil.ignore_patterns("__pycache__")
    )
    ini = (
        (ROOT / "alembic.ini")
        .read_text()
        .replace("%(here)s/migrations", str(tmp_path / "history"))
        .replace("%(here)s", str(ROOT))
    )
    (tmp_path / "alembic.ini").write_text(ini)
    before = sorted((tmp_path / "history" / "versions").iterdir())

    done = await run(
        "-m",
        "alembic",
        "-c",
        str(tmp_path / "alembic.ini"),
        "revision",
        "--autogenerate",
        "-m",
        "nothing",
        database_url=database.admin_url,
    )

    assert done.returncode == 0, done.stderr
    assert "agree" in done.stderr
    assert sorted((tmp_path / "history" / "versions").iterdir()) == before
