"""A digest of what each webhook delivery's sender signed: ``webhook_deliveries.content_digest``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03

A captured signed delivery replayed under fresh delivery ids was accepted every time (its
key was new), and each copy cost a fetch through the helpdesk's API. The digest of the
signed content (Zendesk: the signature's timestamp + the body; Jira: the body) is the same
for every copy, and unique per source: a second delivery with it is a duplicate, whatever
its id. Deliveries recorded before this revision have none (NULL, which never collides).
The unique index is created in place on both databases (no copy of the table).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_webhook_deliveries_source_content_digest"


def upgrade() -> None:
    op.add_column(
        "webhook_deliveries", sa.Column("content_digest", sa.String(length=64), nullable=True)
    )
    op.create_index(op.f(INDEX), "webhook_deliveries", ["source", "content_digest"], unique=True)


def downgrade() -> None:
    op.drop_index(op.f(INDEX), table_name="webhook_deliveries")
    # SQLite (3.35 and later) and PostgreSQL both drop a plain, unindexed column in place.
    op.execute("ALTER TABLE webhook_deliveries DROP COLUMN content_digest")
