"""Deliveries recorded in batches (``slabot.store.deliveries``), on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from slabot.store.db import make_engine
from slabot.store.deliveries import (
    DeliveryKeyError,
    DeliveryWriter,
    forget_delivery,
    record_deliveries,
)
from slabot.store.events import EventService
from slabot.store.migrate import upgrade
from slabot.store.models import WebhookDelivery
from slabot.store.retry import DatabaseUnavailableError, RetryPolicy
from slabot.store.services import TicketService

NOW = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)


def stored(engine: Engine) -> dict[tuple[str, str], datetime]:
    with Session(engine) as session:
        rows = session.scalars(select(WebhookDelivery)).all()
        return {(row.source, row.delivery_key): row.received_at for row in rows}


def test_a_batch_is_recorded_in_one_go_and_says_which_keys_were_new(migrated: Engine) -> None:
    keys = [("zendesk", "a"), ("zendesk", "b"), ("jira", "a"), ("zendesk", "a")]
    assert record_deliveries(migrated, keys, NOW) == {
        ("zendesk", "a"),
        ("zendesk", "b"),
        ("jira", "a"),
    }
    assert record_deliveries(migrated, [("zendesk", "b"), ("zendesk", " c ")], NOW) == {
        ("zendesk", "c")
    }
    # Read back through the ORM as any other instant (same stored form as record_delivery).
    assert stored(migrated) == {key: NOW for key in [*keys[:3], ("zendesk", "c")]}
    tickets = TicketService(migrated, {}, lambda: NOW)
    assert EventService(tickets).record_delivery("zendesk", "c") is False
    assert EventService(tickets).record_delivery("zendesk", "d") is True
    assert record_deliveries(migrated, [("zendesk", "d")], NOW) == set()


def test_a_malformed_key_writes_nothing(migrated: Engine) -> None:
    with pytest.raises(DeliveryKeyError, match="source and delivery key"):
        record_deliveries(migrated, [("zendesk", "ok"), ("zendesk", "")], NOW)
    with pytest.raises(DeliveryKeyError, match="at most 255"):
        record_deliveries(migrated, [("zendesk", "k" * 256)], NOW)
    assert stored(migrated) == {}


def test_a_forgotten_delivery_is_let_in_again(migrated: Engine) -> None:
    assert record_deliveries(migrated, [("zendesk", "a"), ("jira", "a")], NOW) == {
        ("zendesk", "a"),
        ("jira", "a"),
    }
    assert forget_delivery(migrated, "zendesk", " a ") is True
    assert forget_delivery(migrated, "zendesk", "a") is False
    assert stored(migrated) == {("jira", "a"): NOW}
    assert record_deliveries(migrated, [("zendesk", "a")], NOW) == {("zendesk", "a")}
    with pytest.raises(DeliveryKeyError, match="source and delivery key"):
        forget_delivery(migrated, "zendesk", "")


def test_more_keys_than_one_statement_takes(migrated: Engine) -> None:
    keys = [("zendesk", f"key-{n}") for n in range(700)]
    assert len(record_deliveries(migrated, keys, NOW)) == 700
    assert record_deliveries(migrated, keys[::7], NOW) == set()


def test_writers_on_several_threads_let_each_key_through_once(migrated: Engine) -> None:
    """Four replicas' recorders, each its own connection, racing on the same 300 keys."""
    keys = [("zendesk", f"delivery-{n}") for n in range(300)]
    new: list[set[tuple[str, str]]] = []
    lock = threading.Lock()
    start = threading.Barrier(4)

    def replica(offset: int) -> None:
        writer = DeliveryWriter(migrated)
        try:
            start.wait()
            mine = keys[offset:] + keys[:offset]
            for first in range(0, len(mine), 25):
                got = writer.record(mine[first : first + 25], NOW)
                with lock:
                    new.append(got)
        finally:
            writer.close()

    threads = [threading.Thread(target=replica, args=(n * 75,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    accepted = [key for batch in new for key in batch]
    assert sorted(accepted) == sorted(keys)  # every key new exactly once, across replicas
    assert len(stored(migrated)) == 300


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_a_delivery_whose_signed_content_was_recorded_is_a_duplicate_under_any_key(
    migrated: Engine,
) -> None:
    """A captured delivery replayed under fresh ids carries the same signed content: its
    digest, not its id, makes it a duplicate (per source; deliveries without one never
    collide)."""
    first = ("zendesk", "invocation:1")
    assert record_deliveries(migrated, [first], NOW, digests={first: digest("a")}) == {first}
    replays = [("zendesk", f"invocation:{n}") for n in range(2, 6)]
    found = record_deliveries(migrated, replays, NOW, digests=dict.fromkeys(replays, digest("a")))
    assert found == set()
    # The same content from another source, or other content under a fresh id, is new.
    other_source, other_content = ("jira", "invocation:2"), ("zendesk", "invocation:9")
    assert record_deliveries(
        migrated,
        [other_source, other_content],
        NOW,
        digests={other_source: digest("a"), other_content: digest("b").upper()},
    ) == {other_source, other_content}
    # Two copies in one batch under two ids: exactly one is new.
    pair = [("zendesk", "invocation:20"), ("zendesk", "invocation:21")]
    copies = record_deliveries(migrated, pair, NOW, digests=dict.fromkeys(pair, digest("c")))
    assert len(copies) == 1
    # Without digests (Slack's deliveries, rows stored before revision 0004) only keys count.
    assert record_deliveries(migrated, [("slack", "x"), ("slack", "y")], NOW) == {
        ("slack", "x"),
        ("slack", "y"),
    }
    with Session(migrated) as session:
        rows = session.execute(
            select(WebhookDelivery.delivery_key, WebhookDelivery.content_digest).where(
                WebhookDelivery.source == "zendesk"
            )
        ).all()
    assert {key: value for key, value in rows}["invocation:9"] == digest("b")  # stored lower-case
    assert len(rows) == 3  # a duplicate leaves no row behind
    # A delivery forgotten (its job failed) frees its digest: the helpdesk's retry gets in.
    assert forget_delivery(migrated, *first)
    again = ("zendesk", "invocation:30")
    assert record_deliveries(migrated, [again], NOW, digests={again: digest("a")}) == {again}


def test_a_malformed_digest_writes_nothing(migrated: Engine) -> None:
    key = ("zendesk", "ok")
    with pytest.raises(DeliveryKeyError, match="64 hex digits"):
        record_deliveries(migrated, [key], NOW, digests={key: "not-a-digest"})
    assert stored(migrated) == {}


def test_an_unreachable_database_records_nothing_and_says_so(tmp_path: object) -> None:
    dead = make_engine("postgresql://slabot:secret@127.0.0.1:1/slabot")
    sleeps: list[float] = []
    writer = DeliveryWriter(dead, retry=RetryPolicy(attempts=3, sleep=sleeps.append))
    with pytest.raises(DatabaseUnavailableError, match="nothing was changed") as caught:
        writer.record([("zendesk", "a")], NOW)
    assert "secret" not in str(caught.value)
    assert len(sleeps) == 2
    dead.dispose()


def test_sqlite_a_writer_waits_for_another_writers_lock(tmp_path: Path) -> None:
    """``BEGIN IMMEDIATE`` is refused while another connection holds the write lock; the
    writer tries again in short steps (not SQLite's growing sleeps) until the lock is free."""
    engine = make_engine(f"sqlite:///{tmp_path / 'slabot.db'}")
    upgrade(engine)
    holder = engine.raw_connection()
    holder.cursor().execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.2, holder.rollback)
    release.start()
    writer = DeliveryWriter(engine, retry=RetryPolicy(attempts=1))  # no retry around it
    try:
        assert writer.record([("zendesk", "a"), ("zendesk", "b")], NOW) == {
            ("zendesk", "a"),
            ("zendesk", "b"),
        }
    finally:
        release.join()
        writer.close()
        holder.close()
    assert set(stored(engine)) == {("zendesk", "a"), ("zendesk", "b")}
    engine.dispose()
