"""Threshold marks: when each open ticket's clocks reach 75%, 100%... of their targets.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24

Written out with plain SQLAlchemy types, like 0001. The covering index on
``(threshold_permille, at, ...)`` answers the breach queries (breached now, reaching a
fraction within a horizon) without reading anything else: it holds every column they
return, the ticket's source and key included. Upgrading leaves the
table empty: ``slabot recompute --policy FILE`` fills it for tickets already stored (every
later ingest or reclassification writes a ticket's marks with its decision).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
INSTANT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "target_marks",
        sa.Column("ticket_id", ID, nullable=False),
        sa.Column("target", sa.String(length=32), nullable=False),
        sa.Column("threshold_permille", sa.Integer(), nullable=False),
        sa.Column("at", INSTANT, nullable=False),
        sa.Column("cycle_started_at", INSTANT, nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("external_key", sa.String(length=255), nullable=False),
        sa.CheckConstraint(
            "target IN ('first_response', 'restoration', 'next_update')",
            name=op.f("ck_target_marks_target"),
        ),
        sa.CheckConstraint(
            "threshold_permille > 0", name=op.f("ck_target_marks_threshold_permille")
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
            name=op.f("fk_target_marks_ticket_id_tickets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "ticket_id", "target", "threshold_permille", name=op.f("pk_target_marks")
        ),
    )
    op.create_index(
        "ix_target_marks_threshold_at",
        "target_marks",
        [
            "threshold_permille",
            "at",
            "ticket_id",
            "target",
            "cycle_started_at",
            "source",
            "external_key",
        ],
    )


def downgrade() -> None:
    op.drop_index("ix_target_marks_threshold_at", table_name="target_marks")
    op.drop_table("target_marks")
