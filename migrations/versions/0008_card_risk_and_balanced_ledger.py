"""Card-funded risk controls, and a ledger that refuses to be unbalanced.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03

- `transactions.top_up_settlements`: card money a wallet may not send on before `settles_at`
  (CARD_FUNDS_SETTLE_SECONDS after the top-up, unless 3-D Secure authenticated the payment).
  Append-only for the service role: a settlement lapses with time, it is never changed.
- `payments.payments.three_d_secure`: whether 3-D Secure authenticated the payment, sent on in
  `payment.succeeded`.
- A deferred constraint trigger on `transactions.entries`: at commit, every ledger transaction
  that gained entries must sum to zero per currency, or the commit fails (check_violation).
  Whatever inserts the entries (the service, a future code path, someone holding the role's
  password), money can be neither created nor destroyed. It fires per entry, but checks each
  ledger transaction once: the entries of a posting are inserted together, so their events
  queue one after another, and the check of the first covers the rest.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "transactions"
ROLE = "transactions_service"

# The setting holds "<transaction id>:<largest entry id the check saw>" for the rest of the
# database transaction: an entry of that ledger transaction with an id up to it was part of the
# sum already. An entry inserted after that check has a larger id and is checked again, so
# switching the constraint to IMMEDIATE and back cannot slip an unbalanced entry past it.
BALANCE_CHECK_FUNCTION = """
CREATE FUNCTION transactions.entries_balance_check() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    checked text := current_setting('micropay.ledger_balance_checked', true);
    last_id bigint;
    unbalanced boolean;
BEGIN
    IF checked IS NOT NULL AND checked <> ''
       AND split_part(checked, ':', 1) = NEW.transaction_id::text
       AND NEW.id <= split_part(checked, ':', 2)::bigint THEN
        RETURN NULL;
    END IF;
    SELECT max(per_currency.last_id), bool_or(per_currency.total <> 0)
      INTO last_id, unbalanced
      FROM (SELECT max(e.id) AS last_id, sum(e.amount) AS total
              FROM transactions.entries AS e
             WHERE e.transaction_id = NEW.transaction_id
             GROUP BY e.currency) AS per_currency;
    IF unbalanced THEN
        RAISE EXCEPTION 'ledger transaction % does not balance: its entries do not sum to zero '
                        'per currency', NEW.transaction_id
              USING ERRCODE = 'check_violation', TABLE = 'entries', SCHEMA = 'transactions',
                    CONSTRAINT = 'entries_balanced';
    END IF;
    PERFORM set_config('micropay.ledger_balance_checked',
                       NEW.transaction_id::text || ':' || last_id::text, true);
    RETURN NULL;
END
$$
"""

BALANCE_TRIGGER = """
CREATE CONSTRAINT TRIGGER entries_balanced
AFTER INSERT ON transactions.entries
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW EXECUTE FUNCTION transactions.entries_balance_check()
"""


def upgrade() -> None:
    """Add the settlements table, the payment's 3-D Secure flag and the balance trigger."""
    op.create_table(
        "top_up_settlements",
        sa.Column("transaction_id", postgresql.UUID(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("settles_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount > 0", name="top_up_settlements_amount_check"),
        sa.ForeignKeyConstraint(
            ["account_id"], [f"{SCHEMA}.accounts.id"], name="top_up_settlements_account_id_fkey"
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            [f"{SCHEMA}.ledger_transactions.id"],
            name="top_up_settlements_transaction_id_fkey",
        ),
        sa.PrimaryKeyConstraint("transaction_id", name="top_up_settlements_pkey"),
        schema=SCHEMA,
    )
    op.create_index(
        "top_up_settlements_account_idx",
        "top_up_settlements",
        ["account_id", "settles_at"],
        schema=SCHEMA,
    )
    # Granted here, so the grants made after every upgrade leave it narrowed: append-only.
    op.execute(f"REVOKE ALL ON TABLE {SCHEMA}.top_up_settlements FROM {ROLE}")
    op.execute(f"GRANT SELECT, INSERT ON TABLE {SCHEMA}.top_up_settlements TO {ROLE}")

    op.add_column(
        "payments",
        sa.Column("three_d_secure", sa.Boolean(), server_default=sa.false(), nullable=False),
        schema="payments",
    )

    op.execute(BALANCE_CHECK_FUNCTION)
    op.execute(BALANCE_TRIGGER)


def downgrade() -> None:
    """Drop the balance trigger, the 3-D Secure flag and the settlements table."""
    op.execute("DROP TRIGGER entries_balanced ON transactions.entries")
    op.execute("DROP FUNCTION transactions.entries_balance_check()")
    op.drop_column("payments", "three_d_secure", schema="payments")
    op.drop_index("top_up_settlements_account_idx", table_name="top_up_settlements", schema=SCHEMA)
    op.drop_table("top_up_settlements", schema=SCHEMA)
