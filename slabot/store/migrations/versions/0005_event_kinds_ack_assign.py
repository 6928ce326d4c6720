"""Ticket history kinds for Slack's breach buttons: ``acknowledged`` and ``assigned``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

"I'm on it" on a breach notice is kept as an ``acknowledged`` entry, "Assign to me" as an
``assigned`` entry (who asked, the helpdesk user's e-mail address), so the audit of a ticket
shows who took a breach and when. Only the CHECK constraint on ``ticket_events.kind``
changes; SQLite cannot alter a constraint, so the batch mode copies the table (nothing
refers to it, so the copy keeps every row and the foreign key to ``tickets``).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BEFORE = ("created", "priority_changed", "status_changed", "public_reply", "solved", "reopened")
_AFTER = (*_BEFORE, "acknowledged", "assigned")


def _kinds(kinds: tuple[str, ...]) -> str:
    return "kind IN (" + ", ".join(f"'{kind}'" for kind in kinds) + ")"


def _replace(kinds: tuple[str, ...]) -> None:
    with op.batch_alter_table("ticket_events", recreate="auto") as batch:
        batch.drop_constraint(op.f("ck_ticket_events_kind"), type_="check")
        batch.create_check_constraint("kind", _kinds(kinds))


def upgrade() -> None:
    _replace(_AFTER)


def downgrade() -> None:
    op.execute("DELETE FROM ticket_events WHERE kind IN ('acknowledged', 'assigned')")
    _replace(_BEFORE)
