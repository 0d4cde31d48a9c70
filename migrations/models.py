"""What the migrations are held to: every service's models and the shared tables in each schema.

Used by `alembic revision --autogenerate`, `python -m migrations check` and the schema test. It
imports every service's `models.py`, so it needs a full checkout (an image carries one service).
"""

from __future__ import annotations

import importlib
from typing import Any

from sqlalchemy import MetaData

from micropay_common.services import SERVICES
from micropay_common.tables import shared_metadata
from migrations.checks import PLUGIN as CHECK_CONSTRAINTS

SERVICE_SCHEMAS = frozenset(spec.schema for spec in SERVICES.values())


def target_metadata() -> MetaData:
    """The services' models plus outbox, inbox and idempotency_keys placed in every schema."""
    metadata = MetaData()
    for spec in SERVICES.values():
        for table in shared_metadata.sorted_tables:
            table.to_metadata(metadata, schema=spec.schema)
        models = importlib.import_module(f"{spec.package}.models")
        for table in models.Base.metadata.sorted_tables:
            if table.schema != spec.schema:
                raise ValueError(
                    f"{spec.package}.models: table {table.name} must be in schema {spec.schema}, "
                    f"not {table.schema}"
                )
            table.to_metadata(metadata)
    return metadata


def include_name(name: str | None, type_: str, parent_names: dict[str, Any]) -> bool:
    """Compare only the services' schemas (not public, not the version table's schema)."""
    if type_ == "schema":
        return name in SERVICE_SCHEMAS
    return True


def autogenerate_options() -> dict[str, Any]:
    """How autogenerate and `check` compare the database with the models."""
    return {
        "include_schemas": True,
        "include_name": include_name,
        "compare_type": True,
        "compare_server_default": True,
        "autogenerate_plugins": ["alembic.autogenerate.*", CHECK_CONSTRAINTS],
    }
