"""Pending invitations count in the day's transfer limit of every transfer.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02

An invitation made today holds money that leaves the wallet when its email signs up, and its
creation already weighs the day's limit with what was sent. `transactions.transfer` now weighs
the same sum (transfers sent since the day began plus the invitations made since then that are
still pending), before the recipient is looked at and again under the wallet's lock, so that
inviting first and transferring after cannot carry more than the limit out of a wallet in a day.
The function is 0011's with those two sums changed; an index finds a sender's pending
invitations.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | Sequence[str] | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "transactions"

_PENDING_INVITED_SINCE = """(SELECT coalesce(sum(i.amount), 0)
                FROM transactions.transfer_invitations AS i
               WHERE i.sender_id = p_sender_id AND i.currency = p_currency
                 AND i.status = 'pending' AND i.created_at >= p_day_start)"""

# The two sums of 0011's TRANSFER, as written there (indentation included).
_SENT_BEFORE_THE_RECIPIENT = "\n".join(
    [
        "           (SELECT coalesce(-sum(e.amount), 0) FROM transactions.entries AS e",
        "             WHERE e.account_id = sender_wallet.id AND e.type = 'transfer_out'",
        "               AND e.created_at >= p_day_start) AS sender_sent_today,",
    ]
)
_SENT_UNDER_THE_LOCK = "\n".join(
    [
        "    SELECT coalesce(-sum(e.amount), 0) INTO sent_today FROM transactions.entries AS e",
        "     WHERE e.account_id = parties.sender_wallet AND e.type = 'transfer_out'",
        "       AND e.created_at >= p_day_start;",
    ]
)


def _hot_path_functions() -> ModuleType:
    """Revision 0011's module: its `TRANSFER` is amended here and restored by the downgrade."""
    path = Path(__file__).with_name("0011_hot_path_functions.py")
    spec = importlib.util.spec_from_file_location("micropay_migration_0011", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _replaced(definition: str) -> str:
    """`definition` as CREATE OR REPLACE (it keeps the function's grants)."""
    assert definition.lstrip().startswith("CREATE FUNCTION transactions.transfer(")
    return definition.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)


def _with_invitations(transfer: str) -> str:
    """0011's transfer with pending invitations added to both of its sums of the day."""
    assert transfer.count(_SENT_BEFORE_THE_RECIPIENT) == 1
    assert transfer.count(_SENT_UNDER_THE_LOCK) == 1
    before = _SENT_BEFORE_THE_RECIPIENT.replace(
        ") AS sender_sent_today,", f")\n           + {_PENDING_INVITED_SINCE} AS sender_sent_today,"
    )
    under = _SENT_UNDER_THE_LOCK + f"\n    sent_today := sent_today + {_PENDING_INVITED_SINCE};"
    return transfer.replace(_SENT_BEFORE_THE_RECIPIENT, before).replace(_SENT_UNDER_THE_LOCK, under)


def upgrade() -> None:
    """Index a sender's pending invitations; weigh them in transactions.transfer."""
    op.create_index(
        "transfer_invitations_pending_sender_idx",
        "transfer_invitations",
        ["sender_id", "currency", "created_at"],
        schema=SCHEMA,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.execute(_replaced(_with_invitations(_hot_path_functions().TRANSFER)))


def downgrade() -> None:
    """Restore 0011's transactions.transfer and drop the index."""
    op.execute(_replaced(_hot_path_functions().TRANSFER))
    op.drop_index("transfer_invitations_pending_sender_idx", "transfer_invitations", schema=SCHEMA)
