"""New due notifications announce themselves: a statement trigger, no statement of the writer's.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-03

The delivery workers wake on `micropay_notifications_due`
(notifications_microservice.models.NOTIFICATIONS_DUE_CHANNEL). The event handlers sent that
`pg_notify` themselves after each user's records, one more round trip for every user of every
event. An `AFTER INSERT ... FOR EACH STATEMENT` trigger on `notifications.notifications` sends it
instead, as revision 0012 does for the outboxes: inside the writer's transaction (delivered at
commit, never on rollback), once per statement, and only when the statement wrote a row that is
due now (`pending`; a `skipped` one is never sent). Rows that become due by an UPDATE (an email
that gets its address, a redelivery) are still announced by their writer.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0021"
down_revision: str | Sequence[str] | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ANNOUNCE = """
CREATE FUNCTION notifications.notifications_announce() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    -- Only "look now": the workers never read the payload (any role may NOTIFY).
    IF EXISTS (SELECT 1 FROM written WHERE status = 'pending') THEN
        PERFORM pg_notify('micropay_notifications_due', '');
    END IF;
    RETURN NULL;
END
$$
"""

TRIGGER = """
CREATE TRIGGER notifications_announce AFTER INSERT ON notifications.notifications
REFERENCING NEW TABLE AS written
FOR EACH STATEMENT EXECUTE FUNCTION notifications.notifications_announce()
"""


def upgrade() -> None:
    """Create the announcing trigger on the notifications."""
    op.execute(ANNOUNCE)
    op.execute(TRIGGER)


def downgrade() -> None:
    """Drop it; the handlers would then have to announce their rows themselves."""
    op.execute("DROP TRIGGER notifications_announce ON notifications.notifications")
    op.execute("DROP FUNCTION notifications.notifications_announce()")
