"""``slabot.store.bulk`` writes what ``executemany`` writes, on SQLite and PostgreSQL (where
the rows travel as arrays taken apart by ``unnest``): the same values, instants and JSON
documents (a list, JSON null, quotes and braces in text) included, the columns left out
given their defaults, new rows numbered in the order given, and a change naming one row
twice applied in order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Engine, Table, bindparam, select
from sqlalchemy.orm import Session

from slabot.store.bulk import delete_rows, insert_rows, update_rows
from slabot.store.models import OutboxItem, StoredTicket

TICKETS = cast(Table, StoredTicket.__table__)
OUTBOX = cast(Table, OutboxItem.__table__)
AT = datetime(2026, 11, 16, 17, 0, tzinfo=UTC)


def ticket(key: str, **values: Any) -> dict[str, Any]:
    return {
        "source": "zendesk",
        "external_key": key,
        "policy": "zoom",
        "created_at": AT,
        "status": "open",
        "priority": None,
        "paused": [["2026-11-16T17:00:00+00:00", None]],
        "routing": None,
        "shown": {"tags": ["a", 'q"uote', "{brace}"], "due": None},
        "first_seen_at": AT,
        "updated_at": AT + timedelta(microseconds=1),
        "search_text": 'zendesk 1 "quoted" {braced} \\ été',
        **values,
    }


def stored(session: Session, table: Table, keys: list[str]) -> list[dict[str, Any]]:
    """The rows of ``keys`` (external keys), in id order, without id and key."""
    rows = session.execute(
        select(table).where(table.c.external_key.in_(keys)).order_by(table.c.id)
    ).mappings()
    return [{k: v for k, v in row.items() if k not in ("id", "external_key")} for row in rows]


def test_inserted_rows_are_those_executemany_inserts_in_the_order_given(
    migrated: Engine,
) -> None:
    rows = [ticket(str(n), priority=f"P{n}") for n in (3, 1, 2)]
    with Session(migrated) as session, session.begin():
        session.execute(
            TICKETS.insert(), [{**row, "external_key": "m" + row["external_key"]} for row in rows]
        )
        insert_rows(session, TICKETS, rows)
    with Session(migrated) as session:
        assert stored(session, TICKETS, ["3", "1", "2"]) == stored(
            session, TICKETS, ["m3", "m1", "m2"]
        )
        keys = session.scalars(
            select(TICKETS.c.external_key)
            .where(TICKETS.c.external_key.in_(["1", "2", "3"]))
            .order_by(TICKETS.c.id)
        ).all()
        assert keys == ["3", "1", "2"]
        got = stored(session, TICKETS, ["3"])[0]
    assert got["replies"] == {}  # the column's default, as executemany applies it
    assert got["routing"] is None and got["paused"] == rows[0]["paused"]
    assert (
        got["search_text"] == rows[0]["search_text"] and got["updated_at"] == rows[0]["updated_at"]
    )


def test_changed_and_deleted_rows_are_those_executemany_changes_and_deletes(
    migrated: Engine,
) -> None:
    keys = ["1", "2", "3", "m1", "m2", "m3"]
    with Session(migrated) as session, session.begin():
        session.execute(TICKETS.insert(), [ticket(key) for key in keys])
        ids = {
            key: id_ for key, id_ in session.execute(select(TICKETS.c.external_key, TICKETS.c.id))
        }
    change = {
        "status": "pending",
        "paused": [],
        "routing": {"rule": "zoom"},
        "shown": {"tags": []},
        "solved_at": AT + timedelta(hours=1),
    }
    key = {"b_key": TICKETS.c.id}
    with Session(migrated) as session, session.begin():
        update_rows(session, TICKETS, key, [{"b_key": ids[k], **change} for k in ("1", "2")])
        delete_rows(session, TICKETS, key, [{"b_key": ids["3"]}])
        by_key = TICKETS.c.id == bindparam("b_key")
        session.execute(
            TICKETS.update().where(by_key), [{"b_key": ids[k], **change} for k in ("m1", "m2")]
        )
        session.execute(TICKETS.delete().where(by_key), [{"b_key": ids["m3"]}])
    with Session(migrated) as session:
        assert stored(session, TICKETS, ["1", "2", "3"]) == stored(
            session, TICKETS, ["m1", "m2", "m3"]
        )
        assert len(stored(session, TICKETS, ["1", "2", "3"])) == 2
        assert stored(session, TICKETS, ["1"])[0]["routing"] == {"rule": "zoom"}


def test_a_change_naming_one_row_twice_is_applied_in_order(migrated: Engine) -> None:
    with Session(migrated) as session, session.begin():
        session.execute(TICKETS.insert(), [ticket("1")])
        ticket_id = session.scalar(select(TICKETS.c.id))
        rows = [{"b_key": ticket_id, "status": status} for status in ("pending", "open")]
        update_rows(session, TICKETS, {"b_key": TICKETS.c.id}, rows)
    with Session(migrated) as session:
        assert session.scalar(select(TICKETS.c.status)) == "open"


def test_columns_left_out_take_their_python_defaults(migrated: Engine) -> None:
    row = {
        "target_system": "zendesk",
        "ticket_id": None,
        "kind": "add_note",
        "payload": {"note": "x"},
        "idempotency_key": "k1",
        "next_attempt_at": AT,
        "created_at": AT,
    }
    with Session(migrated) as session, session.begin():
        insert_rows(session, OUTBOX, [row])
        session.execute(OUTBOX.insert(), [{**row, "idempotency_key": "k2"}])
    with Session(migrated) as session:
        got = session.execute(select(OUTBOX).order_by(OUTBOX.c.id)).mappings().all()
    first, second = (
        {k: v for k, v in r.items() if k not in ("id", "idempotency_key")} for r in got
    )
    assert first == second and first["attempts"] == 0
