"""A database that is briefly unreachable: clear errors, retries, and state left intact."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, event, select, text
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.orm import Session

from bot.compiled import Policy
from slabot.policy_files import BUNDLED_POLICIES, load_policy
from slabot.store.db import make_engine
from slabot.store.events import EventService
from slabot.store.migrate import upgrade
from slabot.store.models import OutboxItem, TicketEvent, WebhookDelivery
from slabot.store.outbox import ClaimedItem, Outbox
from slabot.store.retry import (
    DatabaseUnavailableError,
    RetryPolicy,
    is_transient,
    with_retry,
)
from slabot.store.services import TicketService
from slabot.store.snapshot import Snapshot

T0 = datetime(2026, 11, 16, 17, 0, tzinfo=UTC)
POSTGRESQL_ONLY = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


class Sleeps:
    """A ``sleep`` that records the pauses instead of taking them."""

    def __init__(self) -> None:
        self.pauses: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.pauses.append(seconds)


def quick(sleeps: Sleeps, attempts: int = 4) -> RetryPolicy:
    return RetryPolicy(attempts=attempts, sleep=sleeps, random=lambda: 0.0)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def enqueue(engine: Engine, count: int) -> None:
    with Session(engine) as session, session.begin():
        session.add_all(
            OutboxItem(
                target_system="zendesk",
                kind="set_priority",
                payload={"n": n},
                idempotency_key=f"k{n}",
                attempts=0,
                next_attempt_at=T0,
                created_at=T0,
            )
            for n in range(count)
        )


# --- the policy ---------------------------------------------------------------------------------


def test_the_pause_doubles_up_to_the_cap_and_jitter_only_shortens_it() -> None:
    policy = RetryPolicy(first_delay=0.2, max_delay=1.0, jitter=0.5, random=lambda: 1.0)
    assert [RetryPolicy(random=lambda: 0.0).delay(n) for n in (1, 2, 3, 4, 5)] == [
        0.2,
        0.4,
        0.8,
        1.6,
        2.0,
    ]
    assert policy.delay(1) == pytest.approx(0.1)
    assert policy.delay(9) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="at least one attempt"):
        RetryPolicy(attempts=0)


# --- unreachable databases ----------------------------------------------------------------------


def test_a_closed_postgresql_port_fails_fast_with_a_clear_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = closed_port()
    engine = make_engine(f"postgresql://slabot:s3cret-pw@127.0.0.1:{port}/slabot")
    sleeps = Sleeps()
    outbox = Outbox(engine, lambda: T0, retry=quick(sleeps))
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailableError) as caught:
        outbox.claim("zendesk", "w1")
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert f"database postgresql+psycopg://slabot:***@127.0.0.1:{port}/slabot" in message
    assert "is unavailable for claiming zendesk outbox items" in message
    assert "Connection refused" in message or "connection refused" in message.lower()
    assert "4 attempts" in message and "nothing was changed" in message
    assert "s3cret" not in message
    assert caught.value.attempts == 4
    assert sleeps.pauses == [0.2, 0.4, 0.8]
    retries = [r.getMessage() for r in caplog.records if r.name == "slabot.store.retry"]
    assert len(retries) == 3
    assert "attempt 1 of 4 failed, retrying in 0.20 s" in retries[0]
    assert all(f"127.0.0.1:{port}/slabot" in r and "s3cret" not in r for r in retries)
    engine.dispose()


def test_the_event_service_reports_an_unreachable_database_the_same_way() -> None:
    engine = make_engine(f"postgresql://slabot:s3cret-pw@127.0.0.1:{closed_port()}/slabot")
    sleeps = Sleeps()
    tickets = TicketService(engine, {}, lambda: T0)
    events = EventService(tickets, retry=quick(sleeps, attempts=2))
    with pytest.raises(
        DatabaseUnavailableError, match=r"event d1:e1 of ticket zendesk:1"
    ) as caught:
        events.public_reply("zendesk", "1", T0, event_key="d1:e1")
    assert "s3cret" not in str(caught.value)
    assert len(sleeps.pauses) == 1
    engine.dispose()


def test_an_unopenable_sqlite_file_is_retried_then_reported(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'missing' / 'slabot.db'}")
    sleeps = Sleeps()
    with pytest.raises(DatabaseUnavailableError, match="unable to open database file"):
        Outbox(engine, lambda: T0, retry=quick(sleeps, attempts=3)).depth()
    assert len(sleeps.pauses) == 2


# --- what is never retried ----------------------------------------------------------------------


def test_a_constraint_violation_is_raised_at_once(migrated: Engine) -> None:
    enqueue(migrated, 1)
    calls = []

    def work(session: Session) -> None:
        calls.append(1)
        session.add(
            OutboxItem(
                target_system="zendesk",
                kind="set_priority",
                payload={},
                idempotency_key="k0",
                attempts=0,
                next_attempt_at=T0,
                created_at=T0,
            )
        )

    sleeps = Sleeps()
    with pytest.raises(IntegrityError):
        with_retry(migrated, work, policy=quick(sleeps))
    assert (len(calls), sleeps.pauses) == (1, [])


def test_a_missing_table_is_not_an_outage(engine: Engine) -> None:
    sleeps = Sleeps()
    with pytest.raises((OperationalError, ProgrammingError), match="outbox"):
        Outbox(engine, lambda: T0, retry=quick(sleeps)).claim("zendesk", "w1")
    assert sleeps.pauses == []


def test_only_connection_failures_count_as_transient() -> None:
    refused = OperationalError("SELECT 1", {}, psycopg.OperationalError("connection failed"))
    shutdown = OperationalError("SELECT 1", {}, psycopg.errors.AdminShutdown("terminating"))
    deadlock = OperationalError("SELECT 1", {}, psycopg.errors.DeadlockDetected("deadlock"))
    unique = IntegrityError("INSERT", {}, psycopg.errors.UniqueViolation("duplicate key"))
    syntax = ProgrammingError("SELEC", {}, psycopg.errors.SyntaxError("syntax error"))
    import sqlite3

    locked = OperationalError("BEGIN", {}, sqlite3.OperationalError("database is locked"))
    no_table = OperationalError("SELECT", {}, sqlite3.OperationalError("no such table: outbox"))
    assert [is_transient(e) for e in (refused, shutdown, deadlock, locked)] == [True] * 4
    assert [is_transient(e) for e in (unique, syntax, no_table, ValueError("x"))] == [False] * 4


# --- connections terminated under a running service (PostgreSQL) ---------------------------------


def _terminate_others(url: str) -> int:
    """Terminate every other session of the test database, as an operator or a failover
    would, and wait until they are gone; returns how many there were."""
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as admin:
        pids = [
            pid
            for (pid,) in admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            )
        ]
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            alive = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)
            ).fetchone()
            if alive is not None and alive[0] == 0:
                break
            time.sleep(0.01)
        return len(pids)


@pytest.fixture
def fragile(database_url: str) -> Iterator[Engine]:
    """A migrated engine that does not check pooled connections before use, so a terminated
    session surfaces as an error in the next operation (the retry path)."""
    created = make_engine(database_url, pool_pre_ping=False)
    upgrade(created)
    try:
        yield created
    finally:
        created.dispose()


@POSTGRESQL_ONLY
def test_terminated_sessions_between_operations_are_retried(
    fragile: Engine, database_url: str
) -> None:
    enqueue(fragile, 3)
    sleeps = Sleeps()
    outbox = Outbox(fragile, lambda: T0 + timedelta(minutes=1), retry=quick(sleeps))
    claimed = outbox.claim("zendesk", "w1", limit=3)
    assert _terminate_others(database_url) >= 1
    assert [outbox.complete(item) for item in claimed] == [True, True, True]
    assert sleeps.pauses  # the first completion met the dead connection and was retried
    assert outbox.depth().pending == 0
    with Session(fragile) as session:
        done = session.scalars(select(OutboxItem.done_at)).all()
    assert done == [T0 + timedelta(minutes=1)] * 3


def _kill_during(engine: Engine, url: str, marker: str, *, at: str = "execute") -> list[int]:
    """Terminate the session the first time it is about to run a statement containing
    ``marker`` (or, with ``at="commit"``, when it is about to commit after one)."""
    armed = [0]
    seen = [False]

    def before_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if marker in statement and not armed[0]:
            seen[0] = True
            if at == "execute":
                armed[0] = 1
                _terminate_others(url)

    def before_commit(conn: Any) -> None:
        if at == "commit" and seen[0] and not armed[0]:
            armed[0] = 1
            _terminate_others(url)

    event.listen(engine, "before_cursor_execute", before_execute)
    event.listen(engine, "commit", before_commit)
    return armed


@POSTGRESQL_ONLY
def test_a_session_terminated_mid_event_is_retried_and_applied_once(
    migrated: Engine, database_url: str
) -> None:
    zoom: Policy = load_policy(BUNDLED_POLICIES / "zoom.yaml")
    clock = lambda: T0 + timedelta(hours=2)  # noqa: E731
    tickets = TicketService(migrated, {"zoom": zoom}, clock)
    tickets.ingest(
        Snapshot(
            source="zendesk",
            external_key="1",
            policy="zoom",
            created_at=T0,
            updated_at=T0,
            priority="P2",
            plan="premier",
            environment="production",
            shown={"priority": "P2"},
        )
    )
    sleeps = Sleeps()
    events = EventService(tickets, retry=quick(sleeps))
    fired = _kill_during(migrated, database_url, "INSERT INTO ticket_events")
    result = events.public_reply("zendesk", "1", T0 + timedelta(hours=1), event_key="d1:e1")
    assert fired == [1] and len(sleeps.pauses) == 1
    assert result.outcome == "applied"
    with Session(migrated) as session:
        kinds = session.scalars(select(TicketEvent.kind).order_by(TicketEvent.id)).all()
    assert kinds == ["created", "public_reply"]
    again = events.public_reply("zendesk", "1", T0 + timedelta(hours=1), event_key="d1:e1")
    assert again.outcome == "duplicate"


@POSTGRESQL_ONLY
def test_a_flush_survives_sessions_terminated_mid_run(migrated: Engine, database_url: str) -> None:
    enqueue(migrated, 40)
    sleeps = Sleeps()
    outbox = Outbox(migrated, lambda: T0 + timedelta(minutes=1), retry=quick(sleeps))
    sent: list[str] = []

    def send(item: ClaimedItem) -> None:
        sent.append(item.idempotency_key)
        if len(sent) in (5, 23):
            _terminate_others(database_url)

    report = outbox.flush("zendesk", send, "w1", limit=10)
    assert (report.sent, len(sent), len(set(sent))) == (40, 40, 40)
    assert outbox.depth().pending == 0


@POSTGRESQL_ONLY
def test_a_connection_lost_at_commit_is_retried_only_when_that_is_safe(
    migrated: Engine, database_url: str
) -> None:
    sleeps = Sleeps()
    tickets = TicketService(migrated, {}, lambda: T0)
    events = EventService(tickets, retry=quick(sleeps))
    fired = _kill_during(migrated, database_url, "INSERT INTO webhook_deliveries", at="commit")
    with pytest.raises(DatabaseUnavailableError, match="may or may not have been applied"):
        events.record_delivery("zendesk", "delivery-1")
    assert fired == [1] and sleeps.pauses == []
    # The session died before the commit reached the server: nothing was recorded, and the
    # redelivery goes through.
    with Session(migrated) as session:
        assert session.scalar(select(WebhookDelivery.id)) is None
    assert events.record_delivery("zendesk", "delivery-1") is True

    # Completing an outbox item is safe to repeat: retried.
    enqueue(migrated, 1)
    outbox = Outbox(migrated, lambda: T0, retry=quick(sleeps))
    (item,) = outbox.claim("zendesk", "w1")
    fired = _kill_during(migrated, database_url, "UPDATE outbox", at="commit")
    assert outbox.complete(item) is True
    assert fired == [1] and len(sleeps.pauses) == 1
    with migrated.connect() as connection:
        assert (
            connection.execute(
                text("SELECT count(*) FROM outbox WHERE done_at IS NOT NULL")
            ).scalar()
            == 1
        )


# --- ingest, reclassify and recompute ------------------------------------------------------------


def _zoom() -> Policy:
    return load_policy(BUNDLED_POLICIES / "zoom.yaml")


def _snapshot(key: str = "1", **fields: Any) -> Snapshot:
    values: dict[str, Any] = {
        "source": "zendesk",
        "external_key": key,
        "policy": "zoom",
        "created_at": T0,
        "updated_at": T0,
        "priority": "P2",
        "plan": "premier",
        "environment": "production",
        "shown": {"priority": "P2"},
    }
    values.update(fields)
    return Snapshot(**values)


def _transient_error(engine: Engine) -> Exception:
    """What the driver raises when the database went away (or, on SQLite, stayed locked)."""
    if engine.dialect.name == "postgresql":
        return psycopg.OperationalError("server closed the connection unexpectedly")
    import sqlite3

    return sqlite3.OperationalError("database is locked")


def _fail_once_at(engine: Engine, marker: str) -> list[int]:
    """Make the first statement containing ``marker`` fail as a lost connection would."""
    fired = [0]

    def before_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if marker in statement and not fired[0]:
            fired[0] = 1
            raise _transient_error(engine)

    event.listen(engine, "before_cursor_execute", before_execute)
    return fired


def _lose_the_next_commit_acknowledgement(engine: Engine) -> list[int]:
    """The next commit reaches the database and is applied, then the driver reports the
    connection lost: the client cannot tell whether it went through."""
    fired = [0]
    commit = engine.dialect.do_commit

    def do_commit(dbapi_connection: Any) -> None:
        commit(dbapi_connection)
        if not fired[0]:
            fired[0] = 1
            raise _transient_error(engine)

    engine.dialect.do_commit = do_commit  # type: ignore[method-assign]
    return fired


def _kinds(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return list(session.scalars(select(TicketEvent.kind).order_by(TicketEvent.id)))


def _outbox_kinds(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return list(session.scalars(select(OutboxItem.kind).order_by(OutboxItem.id)))


def test_ingest_reclassify_and_recompute_ride_out_a_lost_connection(migrated: Engine) -> None:
    sleeps = Sleeps()
    tickets = TicketService(
        migrated, {"zoom": _zoom()}, lambda: T0 + timedelta(minutes=5), retry=quick(sleeps)
    )

    fired = _fail_once_at(migrated, "INSERT INTO ticket_events")
    created = tickets.ingest(_snapshot())
    assert fired == [1] and len(sleeps.pauses) == 1
    assert (created.outcome, created.events) == ("created", ("created",))
    assert _kinds(migrated) == ["created"]

    fired = _fail_once_at(migrated, "INSERT INTO outbox")
    result = tickets.reclassify("zendesk", "1", "P1", "ana", "region down", "slack")
    assert fired == [1] and len(sleeps.pauses) == 2
    assert (result.previous_priority, result.decision.priority) == ("P2", "P1")
    assert _kinds(migrated) == ["created", "priority_changed"]
    assert _outbox_kinds(migrated) == ["set_priority", "set_tags", "add_note"]

    fired = _fail_once_at(migrated, "FROM decisions")
    (recomputed,) = list(tickets.recompute("zoom"))
    assert fired == [1] and len(sleeps.pauses) == 3
    assert (recomputed.ticket, recomputed.error) == ("zendesk:1", None)

    fired = _fail_once_at(migrated, "FROM tickets")
    (dry,) = list(tickets.recompute("zoom", dry_run=True))
    assert fired == [1] and len(sleeps.pauses) == 4
    assert dry.ticket == "zendesk:1"


def test_a_lost_commit_acknowledgement_is_retried_only_where_that_is_safe(
    migrated: Engine,
) -> None:
    sleeps = Sleeps()
    tickets = TicketService(
        migrated, {"zoom": _zoom()}, lambda: T0 + timedelta(minutes=5), retry=quick(sleeps)
    )

    # Ingest is idempotent: retried; the retry finds the snapshot applied.
    fired = _lose_the_next_commit_acknowledgement(migrated)
    again = tickets.ingest(_snapshot())
    assert fired == [1] and len(sleeps.pauses) == 1
    assert (again.outcome, again.events, again.enqueued) == ("unchanged", (), ())
    assert _kinds(migrated) == ["created"]

    # A reclassification without a request key: not retried, and the error says so.
    fired = _lose_the_next_commit_acknowledgement(migrated)
    with pytest.raises(DatabaseUnavailableError) as caught:
        tickets.reclassify("zendesk", "1", "P1", "ana", "region down", "slack")
    assert fired == [1] and len(sleeps.pauses) == 1
    message = str(caught.value)
    assert "while committing reclassifying ticket zendesk:1" in message
    assert "may or may not have been applied" in message
    assert "priority_changed entry by ana" in message and "request_key" in message
    assert _kinds(migrated) == ["created", "priority_changed"]  # it had gone through

    # With a request key: retried, and the retry finds it applied.
    fired = _lose_the_next_commit_acknowledgement(migrated)
    result = tickets.reclassify(
        "zendesk", "1", "P3", "ana", "workaround", "slack", request_key="slack:action-7"
    )
    assert fired == [1] and len(sleeps.pauses) == 2
    assert (result.duplicate, result.enqueued) == (True, ())
    assert (result.previous_priority, result.decision.priority) == ("P1", "P3")
    assert _kinds(migrated) == ["created", "priority_changed", "priority_changed"]
    assert _outbox_kinds(migrated).count("add_note") == 2
    # The same request again is a duplicate too.
    repeated = tickets.reclassify(
        "zendesk", "1", "P3", "ana", "workaround", "slack", request_key="slack:action-7"
    )
    assert repeated.duplicate and len(_kinds(migrated)) == 3

    # A recompute batch: not retried at commit; running it again is the remedy.
    fired = _lose_the_next_commit_acknowledgement(migrated)
    with pytest.raises(DatabaseUnavailableError, match="run slabot recompute again"):
        list(tickets.recompute("zoom"))
    assert fired == [1] and len(sleeps.pauses) == 2


def test_ingest_on_an_unreachable_database_fails_with_a_clear_error() -> None:
    engine = make_engine(f"postgresql://slabot:s3cret-pw@127.0.0.1:{closed_port()}/slabot")
    sleeps = Sleeps()
    tickets = TicketService(engine, {"zoom": _zoom()}, lambda: T0, retry=quick(sleeps))
    with pytest.raises(DatabaseUnavailableError) as caught:
        tickets.ingest(_snapshot())
    message = str(caught.value)
    assert "is unavailable for ingesting ticket zendesk:1" in message
    assert "nothing was changed" in message and "s3cret" not in message
    assert sleeps.pauses == [0.2, 0.4, 0.8]
    with pytest.raises(DatabaseUnavailableError, match="reclassifying ticket zendesk:1"):
        tickets.reclassify("zendesk", "1", "P1", "ana", "down", "slack")
    with pytest.raises(DatabaseUnavailableError, match="recomputing policy zoom"):
        list(tickets.recompute("zoom"))
    engine.dispose()


@POSTGRESQL_ONLY
def test_a_session_terminated_mid_ingest_is_retried_and_applied_once(
    migrated: Engine, database_url: str
) -> None:
    sleeps = Sleeps()
    tickets = TicketService(migrated, {"zoom": _zoom()}, lambda: T0, retry=quick(sleeps))
    fired = _kill_during(migrated, database_url, "INSERT INTO ticket_events")
    result = tickets.ingest(_snapshot())
    assert fired == [1] and len(sleeps.pauses) == 1
    assert result.outcome == "created"
    assert _kinds(migrated) == ["created"]
