"""When slabot last read what the helpdesk shows: ``tickets.shown_at``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25

``shown`` is what the helpdesk showed in the fields slabot writes, as of the last snapshot;
``shown_at`` is when that snapshot was applied (the injected clock). A write completed after
it has not been seen echoed yet, so it is not owed again (``TicketService.enqueue_writes``).
Tickets stored before this revision have none until their next snapshot; ``updated_at``
stands in for it meanwhile.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INSTANT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("tickets", sa.Column("shown_at", INSTANT, nullable=True))


def downgrade() -> None:
    # SQLite (3.35 and later) and PostgreSQL both drop a plain column in place; the batch
    # mode's copy of the table would trip over the history's foreign key to it.
    op.execute("ALTER TABLE tickets DROP COLUMN shown_at")
