"""Routing: the policy and rule a decision was made under, the ticket's routing attributes,
and ``policy_changed`` history entries.

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-03

With ``routing:`` rules (docs/policies.md), each ticket is evaluated under the policy the
first matching rule names. ``decisions.policy`` and ``decisions.routing_rule`` say which
(NULL for decisions stored before, or made without routing: the ticket's ``policy`` then);
``tickets.routing`` keeps the attributes the rules read (brand, project, tags...), so that
``slabot recompute --routing`` can re-route stored tickets after the rules change. A move to
another policy is kept as a ``policy_changed`` entry; only the CHECK constraint on
``ticket_events.kind`` changes for it (SQLite copies the table in batch mode, as in 0005).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_BEFORE = (
    "created",
    "priority_changed",
    "status_changed",
    "public_reply",
    "solved",
    "reopened",
    "acknowledged",
    "assigned",
)
_AFTER = (*_BEFORE, "policy_changed")


def _kinds(kinds: tuple[str, ...]) -> str:
    return "kind IN (" + ", ".join(f"'{kind}'" for kind in kinds) + ")"


def _replace(kinds: tuple[str, ...]) -> None:
    with op.batch_alter_table("ticket_events", recreate="auto") as batch:
        batch.drop_constraint(op.f("ck_ticket_events_kind"), type_="check")
        batch.create_check_constraint("kind", _kinds(kinds))


def upgrade() -> None:
    _replace(_AFTER)
    op.add_column("decisions", sa.Column("policy", sa.String(100), nullable=True))
    op.add_column("decisions", sa.Column("routing_rule", sa.String(100), nullable=True))
    op.add_column("tickets", sa.Column("routing", JSON, nullable=True))


def downgrade() -> None:
    # SQLite (3.35 and later) and PostgreSQL both drop a plain column in place; the batch
    # mode's copy of the table would trip over the foreign keys to it (as in 0003).
    op.execute("ALTER TABLE tickets DROP COLUMN routing")
    op.execute("ALTER TABLE decisions DROP COLUMN routing_rule")
    op.execute("ALTER TABLE decisions DROP COLUMN policy")
    op.execute("DELETE FROM ticket_events WHERE kind = 'policy_changed'")
    _replace(_BEFORE)
