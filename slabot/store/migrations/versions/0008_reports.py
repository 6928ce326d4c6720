"""Clock outcomes: one row per cycle of each clock, which the compliance reports aggregate.

Revision ID: 0008
Revises: 0005
Create Date: 2026-12-03

Written out with plain SQLAlchemy types, like 0001. Upgrading leaves the table empty: every
later decision (ingest, event, reclassification, ``slabot recompute``) writes the ticket's
outcomes, so reports cover the clocks evaluated from then on (docs/reporting.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
INSTANT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "clock_outcomes",
        sa.Column("ticket_id", ID, nullable=False),
        sa.Column("target", sa.String(length=32), nullable=False),
        sa.Column("cycle_started_at", INSTANT, nullable=False),
        sa.Column("due", INSTANT, nullable=True),
        sa.Column("stopped_at", INSTANT, nullable=True),
        sa.Column("used_seconds", sa.Integer(), nullable=True),
        sa.Column("paused_seconds", sa.Integer(), nullable=False),
        sa.Column("evaluated_at", INSTANT, nullable=False),
        sa.Column("policy", sa.String(length=100), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("external_key", sa.String(length=255), nullable=False),
        sa.Column("plan", sa.String(length=100), nullable=True),
        sa.Column("commitment", sa.String(length=8), nullable=True),
        sa.Column("priority", sa.String(length=32), nullable=False),
        sa.Column("created_priority", sa.String(length=32), nullable=False),
        sa.Column("reclassifications", sa.Integer(), nullable=False),
        sa.Column("first_cycle", sa.Boolean(), nullable=False),
        sa.Column("lead", sa.Boolean(), nullable=False),
        sa.Column("organization", sa.String(length=255), nullable=True),
        sa.Column("queue", sa.String(length=255), nullable=True),
        sa.Column("assignee", sa.String(length=255), nullable=True),
        sa.CheckConstraint(
            "target IN ('first_response', 'restoration', 'next_update')",
            name=op.f("ck_clock_outcomes_target"),
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
            name=op.f("fk_clock_outcomes_ticket_id_tickets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "ticket_id", "target", "cycle_started_at", name=op.f("pk_clock_outcomes")
        ),
    )
    op.create_index(
        op.f("ix_clock_outcomes_cycle_started_at"), "clock_outcomes", ["cycle_started_at"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_clock_outcomes_cycle_started_at"), table_name="clock_outcomes")
    op.drop_table("clock_outcomes")
