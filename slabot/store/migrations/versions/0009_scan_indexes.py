"""The dashboard's list a page at a time: ``tickets.next_due_at``, ``queue``, ``assignee_email``.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03

The dashboard lists open tickets by their next due instant and filters them by group and
assignee. Reading that order from the breach marks meant grouping every mark of every open
ticket before the first row could be shown; these columns (written with each decision,
``slabot.store.breaches.list_columns``) and their indexes let a page be read as one range of
an index, whatever the number of tickets stored. Tickets stored before this revision get
them here: ``next_due_at`` from their breach marks, ``queue`` and ``assignee_email`` from
what their helpdesk showed (a string, trimmed; the e-mail address lower-case).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INSTANT = sa.DateTime(timezone=True)
INDEXES = (
    ("ix_tickets_next_due_at_id", ("next_due_at", "id")),
    ("ix_tickets_queue_next_due_at_id", ("queue", "next_due_at", "id")),
    ("ix_tickets_assignee_email_next_due_at_id", ("assignee_email", "next_due_at", "id")),
)


def _shown_text(key: str) -> str:
    """SQL for ``shown[key]`` when it is a non-blank string, trimmed; else NULL."""
    if op.get_bind().dialect.name == "postgresql":
        return (
            f"CASE WHEN jsonb_typeof(shown->'{key}') = 'string' "
            f"THEN nullif(btrim(shown->>'{key}'), '') END"
        )
    return (
        f"CASE WHEN json_type(shown, '$.{key}') = 'text' "
        f"THEN nullif(trim(json_extract(shown, '$.{key}')), '') END"
    )


def upgrade() -> None:
    op.add_column("tickets", sa.Column("next_due_at", INSTANT, nullable=True))
    op.add_column("tickets", sa.Column("queue", sa.String(255), nullable=True))
    op.add_column("tickets", sa.Column("assignee_email", sa.String(255), nullable=True))
    op.execute(
        "UPDATE tickets SET next_due_at = (SELECT min(at) FROM target_marks "
        "WHERE target_marks.ticket_id = tickets.id AND threshold_permille = 1000), "
        f"queue = {_shown_text('queue')}, "
        f"assignee_email = lower({_shown_text('assignee_email')})"
    )
    for name, columns in INDEXES:
        op.create_index(name, "tickets", list(columns))


def downgrade() -> None:
    for name, _columns in INDEXES:
        op.drop_index(name, table_name="tickets")
    # In place on SQLite (3.35 and later) and PostgreSQL, as in revision 0003.
    for column in ("assignee_email", "queue", "next_due_at"):
        op.execute(f"ALTER TABLE tickets DROP COLUMN {column}")
