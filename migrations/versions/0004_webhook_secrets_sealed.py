"""Webhook signing secrets sealed with KMS: columns for the envelope; the clear one nullable.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03

A webhook endpoint's signing secret is now stored sealed (envelope encryption): the data key
KMS encrypted (`secret_encrypted_key`), the key that encrypted it (`secret_key_id`), and the
secret encrypted with that data key by AES-256-GCM (`secret_nonce`, `secret_ciphertext`).
A migration cannot call KMS, so the clear secrets of existing rows stay where they are: the
service seals them at start-up (a background job) and clears `secret`; a later revision drops
the column once every deployment has run it. The CHECK admits a row sealed or in clear, never
both and never neither, so the release before this one (which writes `secret` only) keeps
working during a rolling deployment. Grants are per table; the role already has SELECT,
INSERT and UPDATE on this one (docs/migrations.md, revision 0004).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "notifications"
TABLE = "webhook_endpoints"
SEALED_OR_LEGACY = (
    "(secret IS NULL AND secret_key_id IS NOT NULL AND secret_encrypted_key IS NOT NULL"
    " AND secret_nonce IS NOT NULL AND secret_ciphertext IS NOT NULL)"
    " OR (secret IS NOT NULL AND secret_key_id IS NULL AND secret_encrypted_key IS NULL"
    " AND secret_nonce IS NULL AND secret_ciphertext IS NULL)"
)


def upgrade() -> None:
    """Add the sealed secret's columns, let `secret` be null, and index the rows still in clear."""
    op.add_column(TABLE, sa.Column("secret_key_id", sa.Text(), nullable=True), schema=SCHEMA)
    op.add_column(
        TABLE, sa.Column("secret_encrypted_key", sa.LargeBinary(), nullable=True), schema=SCHEMA
    )
    op.add_column(TABLE, sa.Column("secret_nonce", sa.LargeBinary(), nullable=True), schema=SCHEMA)
    op.add_column(
        TABLE, sa.Column("secret_ciphertext", sa.LargeBinary(), nullable=True), schema=SCHEMA
    )
    op.alter_column(TABLE, "secret", existing_type=sa.Text(), nullable=True, schema=SCHEMA)
    op.create_check_constraint(
        "webhook_endpoints_secret_check", TABLE, SEALED_OR_LEGACY, schema=SCHEMA
    )
    # The start-up job looks for rows still in clear every minute; this keeps that cheap.
    op.create_index(
        "webhook_endpoints_legacy_secret_idx",
        TABLE,
        ["id"],
        schema=SCHEMA,
        postgresql_where=sa.text("secret IS NOT NULL"),
    )


def downgrade() -> None:
    """Drop the sealed columns; refused while a row has only a sealed secret (it would be lost)."""
    op.execute(
        f"DO $$ BEGIN IF EXISTS (SELECT FROM {SCHEMA}.{TABLE} WHERE secret IS NULL) THEN "
        "RAISE EXCEPTION 'webhook endpoints with sealed secrets only: a downgrade would lose "
        "them'; END IF; END $$"
    )
    op.drop_index("webhook_endpoints_legacy_secret_idx", table_name=TABLE, schema=SCHEMA)
    op.drop_constraint("webhook_endpoints_secret_check", TABLE, schema=SCHEMA, type_="check")
    op.alter_column(TABLE, "secret", existing_type=sa.Text(), nullable=False, schema=SCHEMA)
    for column in ("secret_ciphertext", "secret_nonce", "secret_encrypted_key", "secret_key_id"):
        op.drop_column(TABLE, column, schema=SCHEMA)
