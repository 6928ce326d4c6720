"""The schema on SQLite and PostgreSQL: migrations, constraints and instants."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, bindparam, inspect, select, text
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

from slabot.cli import main
from slabot.store.db import make_engine
from slabot.store.migrate import current_revision, head_revision, included_on, upgrade
from slabot.store.models import (
    AppendOnlyError,
    Base,
    Nudge,
    OutboxItem,
    StoredDecision,
    StoredTicket,
    TicketEvent,
    WebhookDelivery,
)
from slabot.store.types import UTCDateTime

T0 = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)
TABLES = {
    "tickets",
    "ticket_events",
    "decisions",
    "outbox",
    "webhook_deliveries",
    "poll_cursors",
    "nudges",
    "target_marks",
    "clock_outcomes",
}


def _ticket(key: str = "42", **fields: object) -> StoredTicket:
    values: dict[str, object] = {
        "source": "zendesk",
        "external_key": key,
        "policy": "cloudtalk",
        "created_at": T0,
        "status": "open",
        "first_seen_at": T0,
        "updated_at": T0,
    }
    values.update(fields)
    return StoredTicket(**values)


@pytest.fixture
def session(migrated: Engine) -> Iterator[Session]:
    with Session(migrated) as opened:
        yield opened


def _add_ticket(session: Session, key: str = "42") -> StoredTicket:
    ticket = _ticket(key)
    session.add(ticket)
    session.commit()
    return ticket


# --- slabot db upgrade ----------------------------------------------------------------------


def test_db_upgrade_creates_every_table_and_is_idempotent(
    database_url: str,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert current_revision(engine) is None

    assert main(["db", "upgrade"]) == 0
    first = capsys.readouterr()
    assert f"upgraded from an empty database to {head_revision()}" in first.out
    assert first.err == ""
    tables = set(inspect(engine).get_table_names())
    assert tables == TABLES | {"alembic_version"}
    assert set(Base.metadata.tables) == TABLES

    assert main(["db", "upgrade"]) == 0
    second = capsys.readouterr()
    assert f"already at revision {head_revision()}" in second.out
    assert set(inspect(engine).get_table_names()) == tables
    assert current_revision(engine) == head_revision()


def test_migrations_build_exactly_the_models(migrated: Engine) -> None:
    """The hand-written revisions and the models agree: nothing left to autogenerate."""
    with migrated.connect() as connection:
        include = included_on(connection.dialect.name)
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_object": include}
        )
        assert compare_metadata(context, Base.metadata) == []
        inspector = inspect(connection)
        checks = {
            table: {c["name"] for c in inspector.get_check_constraints(table)} for table in TABLES
        }
    assert checks["tickets"] == {"ck_tickets_status"}
    assert checks["ticket_events"] == {"ck_ticket_events_kind"}
    assert checks["nudges"] == {"ck_nudges_target", "ck_nudges_threshold"}
    assert checks["target_marks"] == {
        "ck_target_marks_target",
        "ck_target_marks_threshold_permille",
    }
    assert checks["decisions"] == {
        "ck_decisions_first_response_state",
        "ck_decisions_restoration_state",
        "ck_decisions_next_update_state",
    }


def test_db_upgrade_on_an_unreachable_database_fails_with_a_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://slabot:s3cret@127.0.0.1:1/slabot")
    assert main(["db", "upgrade"]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("slabot: database postgresql+psycopg://slabot:***@127.0.0.1:1/")
    assert "Traceback" not in captured.err
    assert "s3cret" not in captured.err + captured.out


def test_db_upgrade_with_a_malformed_url_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql//slabot:s3cret@db")
    assert main(["db", "upgrade"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("slabot: DATABASE_URL ")
    assert "s3cret" not in err


# --- unique constraints ---------------------------------------------------------------------


def test_a_webhook_delivery_key_is_stored_once_per_source(session: Session) -> None:
    session.add(WebhookDelivery(source="zendesk", delivery_key="d-1", received_at=T0))
    session.add(WebhookDelivery(source="jira", delivery_key="d-1", received_at=T0))
    session.commit()
    session.add(WebhookDelivery(source="zendesk", delivery_key="d-1", received_at=T0))
    with pytest.raises(IntegrityError):
        session.commit()


def test_an_outbox_idempotency_key_is_stored_once(session: Session) -> None:
    ticket = _add_ticket(session)

    def item(system: str) -> OutboxItem:
        return OutboxItem(
            target_system=system,
            ticket_id=ticket.id,
            kind="set_priority",
            payload={"priority": "P2"},
            idempotency_key="zendesk:42:priority:P2",
            next_attempt_at=T0,
            created_at=T0,
        )

    session.add(item("zendesk"))
    session.commit()
    stored = session.scalars(select(OutboxItem)).one()
    assert (stored.attempts, stored.done_at, stored.payload) == (0, None, {"priority": "P2"})
    session.add(item("zendesk"))
    with pytest.raises(IntegrityError):
        session.commit()


def test_a_nudge_is_sent_once_per_ticket_target_threshold_and_cycle(session: Session) -> None:
    ticket = _add_ticket(session)

    def nudge(threshold: int = 75, cycle: datetime = T0, target: str = "first_response") -> Nudge:
        return Nudge(
            ticket_id=ticket.id,
            target=target,
            threshold=threshold,
            cycle_started_at=cycle,
            sent_at=T0 + timedelta(hours=1),
        )

    session.add_all(
        [
            nudge(),
            nudge(threshold=100),
            nudge(target="restoration"),
            nudge(cycle=T0 + timedelta(days=1)),
        ]
    )
    session.commit()
    # The same instant written in another zone is the same cycle.
    session.add(nudge(cycle=T0.astimezone(ZoneInfo("Asia/Kolkata"))))
    with pytest.raises(IntegrityError):
        session.commit()


def test_a_ticket_is_stored_once_per_source_and_key(session: Session) -> None:
    _add_ticket(session, "42")
    session.add(_ticket("42", source="jira"))
    session.commit()
    session.add(_ticket("42"))
    with pytest.raises(IntegrityError):
        session.commit()


def test_check_constraints_refuse_unknown_values(session: Session) -> None:
    session.add(_ticket("7", status="waiting"))
    with pytest.raises(IntegrityError):
        session.commit()


def test_history_needs_a_stored_ticket(session: Session) -> None:
    """Foreign keys hold on SQLite too (enforced on every connection)."""
    session.add(TicketEvent(ticket_id=999, kind="created", occurred_at=T0, recorded_at=T0))
    with pytest.raises(IntegrityError):
        session.commit()


def test_history_is_append_only(session: Session) -> None:
    ticket = _add_ticket(session)
    event = TicketEvent(ticket_id=ticket.id, kind="created", occurred_at=T0, recorded_at=T0)
    session.add(event)
    session.commit()
    event.reason = "rewritten"
    with pytest.raises(AppendOnlyError):
        session.commit()
    session.rollback()
    session.delete(event)
    with pytest.raises(AppendOnlyError):
        session.commit()


# --- instants -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "written",
    [
        datetime(2026, 11, 20, 16, 30, tzinfo=timezone(timedelta(hours=1))),
        datetime(2026, 3, 29, 1, 59, 59, tzinfo=ZoneInfo("Europe/Prague")),
        datetime(2026, 3, 29, 3, 0, 0, tzinfo=ZoneInfo("Europe/Prague")),
        datetime(2026, 11, 1, 1, 30, fold=1, tzinfo=ZoneInfo("America/New_York")),
        datetime(2099, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ],
    ids=["offset", "before-dst", "after-dst", "ambiguous-fold", "far-future"],
)
def test_instants_round_trip_as_aware_utc(migrated: Engine, written: datetime) -> None:
    with Session(migrated) as session:
        ticket = _add_ticket(session)
        session.add(
            StoredDecision(
                ticket_id=ticket.id,
                priority="P2",
                first_response_due=written,
                first_response_state="running",
                restoration_state="none",
                next_update_state="none",
                next_change_at=written,
                evaluated_at=T0,
            )
        )
        ticket.solved_at = written
        session.commit()
    with Session(migrated) as session:
        stored = session.scalars(select(StoredTicket)).one()
        decision = session.get(StoredDecision, stored.id)
        assert decision is not None
        for value in (stored.solved_at, decision.first_response_due, decision.next_change_at):
            assert value is not None
            assert value.tzinfo is UTC
            # Compared in UTC: Python never calls an instant with an ambiguous wall clock equal
            # to one in another zone.
            assert value == written.astimezone(UTC)
            assert value.utcoffset() == timedelta(0)
        assert stored.created_at == T0 and stored.created_at.tzinfo is UTC
        # Indexed comparisons see instants, whatever zone they were written in.
        found = session.scalars(
            select(StoredDecision.ticket_id).where(
                StoredDecision.next_change_at <= written.astimezone(ZoneInfo("Asia/Tokyo"))
            )
        ).all()
        assert found == [stored.id]
        before = written.astimezone(UTC) - timedelta(seconds=1)
        assert (
            session.scalars(
                select(StoredDecision.ticket_id).where(StoredDecision.next_change_at <= before)
            ).all()
            == []
        )


def test_instants_sort_in_time_order(migrated: Engine) -> None:
    instants = [
        datetime(2026, 11, 20, 23, 0, tzinfo=timezone(timedelta(hours=-5))),  # 21st 04:00Z
        datetime(2026, 11, 21, 3, 0, tzinfo=UTC),
        datetime(2026, 11, 21, 6, 0, tzinfo=timezone(timedelta(hours=5))),  # 21st 01:00Z
    ]
    with Session(migrated) as session:
        session.add_all(_ticket(str(n), created_at=instant) for n, instant in enumerate(instants))
        session.commit()
        keys = session.scalars(select(StoredTicket.external_key).order_by(StoredTicket.created_at))
        assert list(keys) == ["2", "1", "0"]


def test_naive_datetimes_are_refused(session: Session) -> None:
    session.add(_ticket(created_at=datetime(2026, 11, 20, 15, 30)))
    with pytest.raises(StatementError, match="names no instant"):
        session.commit()


def test_sqlite_stores_utc_text(tmp_path: Path) -> None:
    """SQLite has no instant type: UTC wall-clock text of fixed width, so text order is time
    order."""
    engine = make_engine(f"sqlite:///{tmp_path / 'text.db'}")
    try:
        upgrade(engine)
        with Session(engine) as session:
            _add_ticket(session)
            prague = datetime(2026, 11, 20, 16, 30, tzinfo=ZoneInfo("Europe/Prague"))
            session.add(_ticket("43", created_at=prague))
            session.commit()
        with engine.connect() as connection:
            raw = connection.execute(text("SELECT created_at FROM tickets ORDER BY id")).scalars()
            assert list(raw) == ["2026-11-20 15:30:00.000000"] * 2
    finally:
        engine.dispose()


def test_revision_0003_adds_shown_at_and_downgrades_with_tickets_stored(migrated: Engine) -> None:
    from alembic import command

    from slabot.store.migrate import alembic_config

    assert "shown_at" in {c["name"] for c in inspect(migrated).get_columns("tickets")}
    with Session(migrated) as session, session.begin():
        ticket = _ticket("7")
        session.add(ticket)
        session.flush()
        session.add(
            TicketEvent(ticket_id=ticket.id, kind="created", occurred_at=T0, recorded_at=T0)
        )
    with migrated.begin() as connection:
        config = alembic_config(migrated)
        config.attributes["connection"] = connection
        command.downgrade(config, "0002")
    assert "shown_at" not in {c["name"] for c in inspect(migrated).get_columns("tickets")}
    assert upgrade(migrated) == head_revision() == "0010"
    with Session(migrated) as session:
        stored = session.scalars(select(StoredTicket)).one()
        assert (stored.external_key, stored.shown_at) == ("7", None)


def test_revision_0004_adds_content_digest_and_downgrades_with_deliveries_stored(
    migrated: Engine,
) -> None:
    from alembic import command

    from slabot.store.deliveries import record_deliveries
    from slabot.store.migrate import alembic_config

    def columns() -> set[str]:
        return {c["name"] for c in inspect(migrated).get_columns("webhook_deliveries")}

    assert "content_digest" in columns()
    key, digest = ("zendesk", "invocation:1"), "ab" * 32
    assert record_deliveries(migrated, [key], T0, digests={key: digest}) == {key}
    with migrated.begin() as connection:
        config = alembic_config(migrated)
        config.attributes["connection"] = connection
        command.downgrade(config, "0003")
    assert "content_digest" not in columns()
    assert upgrade(migrated) == head_revision() == "0010"
    with Session(migrated) as session:
        row = session.scalars(select(WebhookDelivery)).one()
        assert (row.delivery_key, row.content_digest) == ("invocation:1", None)
    # The index is back: a replay of new content under a fresh id is refused once recorded.
    again = [("zendesk", "invocation:2"), ("zendesk", "invocation:3")]
    assert len(record_deliveries(migrated, again, T0, digests=dict.fromkeys(again, digest))) == 1


def test_revision_0005_adds_the_breach_button_kinds_and_still_refuses_others(
    migrated: Engine,
) -> None:
    from alembic import command

    from slabot.store.migrate import alembic_config

    with Session(migrated) as session, session.begin():
        ticket = _ticket("8")
        session.add(ticket)
        session.flush()
        ticket_id = ticket.id
        for kind in ("created", "acknowledged", "assigned"):
            session.add(TicketEvent(ticket_id=ticket_id, kind=kind, occurred_at=T0, recorded_at=T0))
    with pytest.raises(IntegrityError), Session(migrated) as session, session.begin():
        session.add(TicketEvent(ticket_id=ticket_id, kind="bogus", occurred_at=T0, recorded_at=T0))
    with migrated.begin() as connection:
        config = alembic_config(migrated)
        config.attributes["connection"] = connection
        command.downgrade(config, "0004")
    with Session(migrated) as session:  # the older schema cannot hold the new kinds
        assert [e.kind for e in session.scalars(select(TicketEvent))] == ["created"]
    with pytest.raises(IntegrityError), Session(migrated) as session, session.begin():
        session.add(
            TicketEvent(ticket_id=ticket_id, kind="assigned", occurred_at=T0, recorded_at=T0)
        )
    assert upgrade(migrated) == head_revision() == "0010"
    with Session(migrated) as session, session.begin():
        session.add(
            TicketEvent(ticket_id=ticket_id, kind="assigned", occurred_at=T0, recorded_at=T0)
        )
    with Session(migrated) as session:
        kinds = [e.kind for e in session.scalars(select(TicketEvent).order_by(TicketEvent.id))]
        assert kinds == ["created", "assigned"]


def test_instants_read_on_the_fast_path_equal_the_general_one(migrated: Engine) -> None:
    """Values in the stored form take the fast path; others (text with an offset written by
    hand on SQLite, a session in another zone on PostgreSQL) the general one: both give the
    same aware UTC instants."""
    from slabot.store.types import UTCDateTime

    dialect = migrated.dialect
    column = UTCDateTime().dialect_impl(dialect)
    assert isinstance(column, UTCDateTime)
    fast = column.result_processor(dialect, None)
    general = super(UTCDateTime, column).result_processor(dialect, None)
    assert fast is not None and general is not None
    instant = datetime(2026, 11, 20, 15, 30, 0, 250000, tzinfo=UTC)
    cases: list[tuple[object, datetime, bool]]  # (read, expected, the general path reads it)
    if dialect.name == "sqlite":
        cases = [
            ("2026-11-20 15:30:00.250000", instant, True),
            ("2026-11-20 15:30:00", instant.replace(microsecond=0), True),
            ("2026-11-20T16:30:00.250000+01:00", instant, False),
        ]
    else:
        cases = [
            (instant, instant, True),
            (instant.astimezone(ZoneInfo("Europe/Berlin")), instant, True),
        ]
    for value, expected, general_reads_it in cases:
        read = fast(value)
        assert read is not None and read.tzinfo is UTC
        assert read == expected
        if general_reads_it:
            assert read == general(value)
    assert fast(None) is None
    with pytest.raises(TypeError):  # as the general path refuses it
        fast(12)


def test_instants_written_on_the_fast_path_equal_the_general_one(migrated: Engine) -> None:
    """An instant already in UTC takes the fast path; any other value the general one
    (``process_bind_param``, then the driver type's processor): both bind the same."""
    from slabot.store.types import UTCDateTime

    dialect = migrated.dialect
    column = UTCDateTime().dialect_impl(dialect)
    assert isinstance(column, UTCDateTime)
    fast = column.bind_processor(dialect)
    general = super(UTCDateTime, column).bind_processor(dialect)
    assert fast is not None and general is not None
    for instant in (
        datetime(2026, 11, 20, 15, 30, 0, 250000, tzinfo=UTC),
        datetime(2026, 11, 20, 15, 30, tzinfo=UTC),  # no microseconds: still written
        datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        datetime(2026, 11, 20, 16, 30, tzinfo=ZoneInfo("Europe/Prague")),
        None,
    ):
        assert fast(instant) == general(instant)
    if dialect.name == "sqlite":
        assert fast(datetime(2026, 11, 20, 15, 30, tzinfo=UTC)) == "2026-11-20 15:30:00.000000"
    with pytest.raises(ValueError, match="names no instant"):
        fast(datetime(2026, 11, 20, 15, 30))
    with pytest.raises(TypeError):
        fast("2026-11-20 15:30:00")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_postgresql_sessions_run_in_utc_unless_the_url_sets_a_zone(database_url: str) -> None:
    engine = make_engine(database_url)
    zoned = make_engine(database_url + "?options=-c%20TimeZone%3DEurope/Berlin")
    try:
        upgrade(engine)
        with Session(engine) as session:
            _add_ticket(session)
        for each, zone in ((engine, "UTC"), (zoned, "Europe/Berlin")):
            with Session(each) as session:
                assert session.scalar(text("SHOW TimeZone")) == zone
                created = session.scalars(select(StoredTicket.created_at)).one()
                assert (created, created.tzinfo) == (T0, UTC)
    finally:
        engine.dispose()
        zoned.dispose()


def test_revision_0007_adds_routing_columns_and_policy_changed_and_downgrades(
    migrated: Engine,
) -> None:
    from alembic import command

    from slabot.store.migrate import alembic_config

    def columns(table: str) -> set[str]:
        return {c["name"] for c in inspect(migrated).get_columns(table)}

    assert {"policy", "routing_rule"} <= columns("decisions")
    assert "routing" in columns("tickets")
    with Session(migrated) as session, session.begin():
        ticket = _ticket("9", routing={"brand": "360000000002", "tags": ["a"]})
        session.add(ticket)
        session.flush()
        ticket_id = ticket.id
        for kind in ("created", "policy_changed"):
            session.add(TicketEvent(ticket_id=ticket_id, kind=kind, occurred_at=T0, recorded_at=T0))
    with Session(migrated) as session:
        assert session.get(StoredTicket, ticket_id).routing == {  # type: ignore[union-attr]
            "brand": "360000000002",
            "tags": ["a"],
        }
    with migrated.begin() as connection:
        config = alembic_config(migrated)
        config.attributes["connection"] = connection
        command.downgrade(config, "0006")
    assert "routing_rule" not in columns("decisions")
    assert "routing" not in columns("tickets")
    with migrated.connect() as connection:
        kinds = connection.execute(text("SELECT kind FROM ticket_events")).scalars().all()
    assert kinds == ["created"]
    with pytest.raises(IntegrityError), migrated.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO ticket_events (ticket_id, kind, occurred_at, recorded_at, payload) "
                "VALUES (:t, 'policy_changed', :at, :at, '{}')"
            ),
            {"t": ticket_id, "at": T0},
        )
    assert upgrade(migrated) == head_revision() == "0010"
    with Session(migrated) as session, session.begin():
        session.add(
            TicketEvent(ticket_id=ticket_id, kind="policy_changed", occurred_at=T0, recorded_at=T0)
        )


def test_revision_0006_adds_replies_and_downgrades_with_tickets_stored(migrated: Engine) -> None:
    from alembic import command

    from slabot.store.migrate import alembic_config

    def columns() -> set[str]:
        return {c["name"] for c in inspect(migrated).get_columns("tickets")}

    assert "replies" in columns()
    replies = {"agent": [T0.isoformat()], "customer": []}
    with Session(migrated) as session, session.begin():
        session.add(_ticket("9", replies=replies))
    with Session(migrated) as session:
        assert session.scalars(select(StoredTicket)).one().replies == replies
    with migrated.begin() as connection:
        config = alembic_config(migrated)
        config.attributes["connection"] = connection
        command.downgrade(config, "0005")
    assert "replies" not in columns()
    assert upgrade(migrated) == head_revision() == "0010"
    with Session(migrated) as session:
        stored = session.scalars(select(StoredTicket)).one()
        assert (stored.external_key, stored.replies) == ("9", None)


def test_revision_0009_fills_the_list_columns_of_tickets_stored_before_it(
    migrated: Engine,
) -> None:
    from alembic import command

    from slabot.store.migrate import alembic_config

    with migrated.begin() as connection:
        config = alembic_config(migrated)
        config.attributes["connection"] = connection
        command.downgrade(config, "0008")
    assert "next_due_at" not in {c["name"] for c in inspect(migrated).get_columns("tickets")}
    due = T0 + timedelta(hours=3)
    with migrated.begin() as connection:
        for ticket_id, key, shown in (
            (1, "1", '{"queue": " Billing ", "assignee_email": "Ana@Example.com"}'),
            (2, "2", '{"queue": 7, "assignee_email": "  "}'),
        ):
            connection.execute(
                text(
                    "INSERT INTO tickets (id, source, external_key, policy, created_at, status, "
                    "paused, shown, first_seen_at, updated_at) VALUES (:id, 'zendesk', :key, "
                    "'cloudtalk', :t0, 'open', '[]', :shown, :t0, :t0)"
                ).bindparams(bindparam("t0", type_=UTCDateTime())),
                {"id": ticket_id, "key": key, "t0": T0, "shown": shown},
            )
        for target, at in (("first_response", due + timedelta(hours=1)), ("next_update", due)):
            for permille, instant in ((750, T0), (1000, at)):
                connection.execute(
                    text(
                        "INSERT INTO target_marks (ticket_id, target, threshold_permille, at, "
                        "cycle_started_at, source, external_key) VALUES (1, :target, :permille, "
                        ":at, :t0, 'zendesk', '1')"
                    ).bindparams(
                        bindparam("at", type_=UTCDateTime()), bindparam("t0", type_=UTCDateTime())
                    ),
                    {"target": target, "permille": permille, "at": instant, "t0": T0},
                )
    assert upgrade(migrated) == head_revision() == "0010"
    with Session(migrated) as session:
        stored = {
            t.id: (t.next_due_at, t.queue, t.assignee_email)
            for t in session.scalars(select(StoredTicket))
        }
    # The earliest breach mark (not a 75% one); a group that is no string and a blank
    # address are read as none, as TicketView reads them.
    assert stored == {1: (due, "Billing", "ana@example.com"), 2: (None, None, None)}
    indexes = {i["name"] for i in inspect(migrated).get_indexes("tickets")}
    assert {"ix_tickets_next_due_at_id", "ix_tickets_queue_next_due_at_id"} <= indexes


def test_revision_0010_fills_the_search_text_and_indexes_it_on_postgresql(
    migrated: Engine,
) -> None:
    from alembic import command

    from slabot.store.migrate import alembic_config
    from slabot.store.search import search_text

    with migrated.begin() as connection:
        config = alembic_config(migrated)
        config.attributes["connection"] = connection
        command.downgrade(config, "0009")
    assert "search_text" not in {c["name"] for c in inspect(migrated).get_columns("tickets")}
    shown = {
        1: '{"subject": "Stra\\u00dfe Export", "requester": {"name": "Ana", "id": 7}}',
        2: "{}",
    }
    with migrated.begin() as connection:
        for ticket_id, value in shown.items():
            connection.execute(
                text(
                    "INSERT INTO tickets (id, source, external_key, policy, created_at, status, "
                    "paused, shown, first_seen_at, updated_at) VALUES (:id, 'zendesk', :key, "
                    "'cloudtalk', :t0, 'open', '[]', :shown, :t0, :t0)"
                ).bindparams(bindparam("t0", type_=UTCDateTime())),
                {"id": ticket_id, "key": str(ticket_id), "t0": T0, "shown": value},
            )
    assert upgrade(migrated) == head_revision() == "0010"
    with Session(migrated) as session:
        stored = {t.id: t.search_text for t in session.scalars(select(StoredTicket))}
    assert stored == {
        1: search_text("zendesk", "1", {"subject": "Straße Export", "requester": {"name": "Ana"}}),
        2: "zd-2\nzendesk:2\n2",
    }
    assert stored[1] == "zd-1\nzendesk:1\n1\nstrasse export\nana"  # case-folded: ß is ss
    indexes = {i["name"] for i in inspect(migrated).get_indexes("tickets")}
    postgresql = migrated.dialect.name == "postgresql"
    assert ("ix_tickets_search_text_trgm" in indexes) == postgresql
    if postgresql:
        with migrated.connect() as connection:
            definition = connection.scalar(
                text("SELECT indexdef FROM pg_indexes WHERE indexname = :name"),
                {"name": "ix_tickets_search_text_trgm"},
            )
        assert "USING gin (search_text gin_trgm_ops)" in str(definition)


def test_revision_0010_without_the_right_to_create_pg_trgm_stops_with_what_to_run(
    database_url: str,
) -> None:
    """A role that may create tables but not extensions: the upgrade stops at 0010 with a
    message naming the extension and the statement a superuser runs, nothing applied; once
    the extension exists the same role upgrades."""
    if not database_url.startswith("postgresql"):
        pytest.skip("pg_trgm is PostgreSQL's; SQLite has no index to create")
    import psycopg
    from sqlalchemy.engine import make_url

    from slabot.store.db import DatabaseError

    url = make_url(database_url)
    role = f"slabot_noext_{url.database}"
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE ROLE "{role}" LOGIN')
        connection.execute(f'GRANT CREATE ON SCHEMA public TO "{role}"')
    limited = make_engine(url.set(username=role).render_as_string(hide_password=False))
    try:
        with pytest.raises(DatabaseError) as raised:
            upgrade(limited)
        message = str(raised.value)
        assert "revision 0010 needs the PostgreSQL extension pg_trgm" in message
        assert "permission denied" in message
        assert f'"CREATE EXTENSION pg_trgm;" in database {url.database}' in message
        assert current_revision(limited) is None  # one transaction: nothing applied
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute("CREATE EXTENSION pg_trgm")
        assert upgrade(limited) == "0010"
    finally:
        limited.dispose()
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP OWNED BY "{role}"')
            connection.execute(f'DROP ROLE "{role}"')
