"""The replies metrics read: ``tickets.replies``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03

Metrics beyond the classic three (docs/metrics.md) start and stop on each public reply:
``next_reply`` runs from a customer's reply to the next agent reply. ``replies`` holds
``{"agent": [...], "customer": [...]}``, ISO 8601 instants oldest first, as the connectors
read them from Zendesk's audits and Jira's comments. Tickets stored before this revision
have none until their next snapshot (their first response and last update stand in for
the agent replies meanwhile).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_DOCUMENT = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.add_column("tickets", sa.Column("replies", JSON_DOCUMENT, nullable=True))


def downgrade() -> None:
    # As 0003: both databases drop a plain column in place.
    op.execute("ALTER TABLE tickets DROP COLUMN replies")
