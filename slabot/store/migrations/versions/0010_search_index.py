"""The dashboard's search from an index: ``tickets.search_text``, trigram-indexed on PostgreSQL.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04

The dashboard's search matched its words against each ticket's shown texts as the list was
read, at most ``SCAN_LIMIT`` tickets a page: a rare word at a million open tickets found a
few rows in 100 ms. ``search_text`` holds the text the search matches, case-folded in Python
(``slabot.store.search.search_text``, written with ``shown``), filled here for the tickets
already stored. On PostgreSQL a GIN index of it with ``gin_trgm_ops`` (the ``pg_trgm``
extension) answers ``search_text LIKE '%word%'`` for a word of three characters or more, so a
search page reads only the tickets it finds. SQLite gets the column, no index.

``pg_trgm`` ships with PostgreSQL (``postgresql-contrib``) and is a trusted extension: a role
that may create objects in the database may create it. When it cannot be created (not
installed on the server, or no such privilege), the upgrade stops with a message saying what
to run as a superuser, and nothing of it is applied; once the extension exists, the upgrade
does not need the privilege (``CREATE EXTENSION IF NOT EXISTS``).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.exc import DBAPIError

from slabot.store.db import DatabaseError
from slabot.store.search import search_text

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_tickets_search_text_trgm"
BATCH = 5000
"""Tickets filled per statement."""


def _create_extension() -> None:
    bind = op.get_bind()
    try:
        with bind.begin_nested():  # a savepoint: the failure does not poison the message
            bind.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except DBAPIError as error:
        first = str(error.orig or error).strip().splitlines()[0]
        database = bind.exec_driver_sql("SELECT current_database()").scalar()
        raise DatabaseError(
            f"revision 0010 needs the PostgreSQL extension pg_trgm (the dashboard's search "
            f"index), which this role cannot create: {first}. Have a superuser run "
            f'"CREATE EXTENSION pg_trgm;" in database {database} (the server needs '
            "PostgreSQL's contrib modules, package postgresql-contrib on some systems), then "
            "run slabot db upgrade again."
        ) from None


def _fill() -> None:
    bind = op.get_bind()
    tickets = sa.table(
        "tickets",
        sa.column("id", sa.BigInteger),
        sa.column("source", sa.String),
        sa.column("external_key", sa.String),
        sa.column("shown", sa.JSON),
        sa.column("search_text", sa.Text),
    )
    update = (
        sa.update(tickets)
        .where(tickets.c.id == sa.bindparam("k_id"))
        .values(search_text=sa.bindparam("v_text"))
    )
    after = 0
    while True:
        rows = bind.execute(
            sa.select(tickets.c.id, tickets.c.source, tickets.c.external_key, tickets.c.shown)
            .where(tickets.c.id > after)
            .order_by(tickets.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        bind.execute(
            update,
            [
                {"k_id": row.id, "v_text": search_text(row.source, row.external_key, row.shown)}
                for row in rows
            ],
        )
        after = rows[-1].id


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    if postgresql:
        _create_extension()
    op.add_column("tickets", sa.Column("search_text", sa.Text(), nullable=True))
    _fill()
    if postgresql:
        op.create_index(
            INDEX,
            "tickets",
            ["search_text"],
            postgresql_using="gin",
            postgresql_ops={"search_text": "gin_trgm_ops"},
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index(INDEX, table_name="tickets")
    # In place on SQLite (3.35 and later) and PostgreSQL, as in revision 0003. The extension
    # stays: other objects may use it, and it costs nothing unused.
    op.execute("ALTER TABLE tickets DROP COLUMN search_text")
