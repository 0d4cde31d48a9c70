"""Every outbox announces its new rows itself: a statement trigger, no statement of the writer's.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04

The relays wake on `micropay_outbox_<schema>` (micropay_common.outbox). Having the writer send
the `pg_notify` cost every event one more round trip, and a writer in SQL (the transfer
function of 0011) had to remember it. An `AFTER INSERT ... FOR EACH STATEMENT` trigger on each
schema's outbox sends it instead: inside the writer's transaction, so PostgreSQL delivers it at
commit and never on rollback, once per statement however many rows it wrote, and folded with
the other notifications of the transaction. The function runs with the writer's privileges; it
reads nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMAS = ("auth", "payments", "transactions", "notifications")

ANNOUNCE = """
CREATE FUNCTION {schema}.outbox_announce() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    -- Only "look now": the relays never read the payload (any role may NOTIFY).
    PERFORM pg_notify('micropay_outbox_' || TG_TABLE_SCHEMA, '');
    RETURN NULL;
END
$$
"""

TRIGGER = """
CREATE TRIGGER outbox_announce AFTER INSERT ON {schema}.outbox
FOR EACH STATEMENT EXECUTE FUNCTION {schema}.outbox_announce()
"""


def upgrade() -> None:
    """Create each schema's announcing trigger on its outbox."""
    for schema in SCHEMAS:
        op.execute(ANNOUNCE.format(schema=schema))
        op.execute(TRIGGER.format(schema=schema))


def downgrade() -> None:
    """Drop the triggers; the writers would then have to announce their rows themselves."""
    for schema in SCHEMAS:
        op.execute(f"DROP TRIGGER outbox_announce ON {schema}.outbox")
        op.execute(f"DROP FUNCTION {schema}.outbox_announce()")
