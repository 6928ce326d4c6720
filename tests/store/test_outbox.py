"""The outbox flusher, on SQLite and PostgreSQL: claims, leases, retries, dead letters and two
flushers at once."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, event, select, text
from sqlalchemy.orm import Session

from slabot.store.models import OutboxItem
from slabot.store.outbox import (
    ClaimedItem,
    Outbox,
    OutboxError,
    PermanentWriteError,
    RetryableWriteError,
)

T0 = datetime(2026, 11, 16, 17, 0, tzinfo=UTC)
WORKER = Path(__file__).with_name("outbox_worker.py")
POSTGRESQL_ONLY = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def outbox(migrated: Engine, clock: FakeClock) -> Outbox:
    # No jitter unless a test asks for it: delays are then exact.
    return Outbox(migrated, clock, rand=lambda: 0.0)


def enqueue(
    engine: Engine,
    count: int = 1,
    *,
    target: str = "zendesk",
    at: datetime = T0,
    step: timedelta = timedelta(seconds=1),
    prefix: str = "k",
) -> list[int]:
    """Owe ``count`` writes, due one ``step`` apart from ``at``; returns their ids."""
    with Session(engine) as session, session.begin():
        items = [
            OutboxItem(
                target_system=target,
                kind="set_priority",
                payload={"priority": "P2", "n": n},
                idempotency_key=f"{target}:{prefix}{n}",
                attempts=0,
                next_attempt_at=at + step * n,
                created_at=at + step * n,
            )
            for n in range(count)
        ]
        session.add_all(items)
        session.flush()
        return [item.id for item in items]


def stored(engine: Engine, item_id: int) -> OutboxItem:
    with Session(engine) as session:
        item = session.get(OutboxItem, item_id)
        assert item is not None
        return item


def all_items(engine: Engine) -> list[OutboxItem]:
    with Session(engine) as session:
        return list(session.scalars(select(OutboxItem).order_by(OutboxItem.id)))


# --- claiming ---------------------------------------------------------------------------------


def test_claim_leases_due_items_oldest_first(
    outbox: Outbox, migrated: Engine, clock: FakeClock
) -> None:
    ids = enqueue(migrated, 5)  # due at T0, T0+1s, ... T0+4s
    enqueue(migrated, 2, target="jira", prefix="j")
    clock.now = T0 + timedelta(seconds=3)

    claimed = outbox.claim("zendesk", "w1", limit=3, lease=timedelta(minutes=2))

    assert [c.id for c in claimed] == ids[:3]
    assert {c.attempt for c in claimed} == {1}
    assert {c.lease_until for c in claimed} == {clock.now + timedelta(minutes=2)}
    assert claimed[0].payload == {"priority": "P2", "n": 0}
    assert claimed[0].idempotency_key == "zendesk:k0"
    for item_id in ids[:3]:
        row = stored(migrated, item_id)
        assert (row.attempts, row.next_attempt_at, row.done_at) == (
            1,
            clock.now + timedelta(minutes=2),
            None,
        )
    # The fourth is due but beyond the limit; the fifth is not due yet; jira's are another
    # target: the next claim gets only the fourth.
    assert [c.id for c in outbox.claim("zendesk", "w2", limit=10)] == [ids[3]]
    assert stored(migrated, ids[4]).attempts == 0


def test_a_leased_item_comes_back_when_the_lease_runs_out(
    outbox: Outbox, migrated: Engine, clock: FakeClock
) -> None:
    (item_id,) = enqueue(migrated)
    (first,) = outbox.claim("zendesk", "crashed", lease=timedelta(minutes=5))
    clock.now += timedelta(minutes=4, seconds=59)
    assert outbox.claim("zendesk", "w2") == []

    clock.now = first.lease_until
    (second,) = outbox.claim("zendesk", "w2", lease=timedelta(minutes=5))
    assert (second.id, second.attempt) == (item_id, 2)
    # The first worker wakes up: its attempt is no longer the item's, it cannot settle it.
    assert outbox.complete(first) is False
    assert outbox.fail(first, first.attempt, "late", True) is False
    assert stored(migrated, item_id).done_at is None
    assert outbox.complete(second) is True
    assert outbox.complete(second) is False  # already done
    row = stored(migrated, item_id)
    assert (row.done_at, row.next_attempt_at, row.attempts) == (clock.now, None, 2)


def test_complete_all_settles_the_items_whose_claim_is_still_theirs_in_one_go(
    outbox: Outbox, migrated: Engine, clock: FakeClock
) -> None:
    kept, lost, settled = enqueue(migrated, count=3)
    clock.now += timedelta(seconds=2)  # all three due
    claimed = outbox.claim("zendesk", "w1", limit=1, lease=timedelta(minutes=10))
    claimed += outbox.claim("zendesk", "w1", lease=timedelta(minutes=5))
    assert [c.id for c in claimed] == [kept, lost, settled]
    assert outbox.complete(claimed[2]) is True  # already done
    clock.now += timedelta(minutes=5)
    (again,) = outbox.claim("zendesk", "w2")  # the lease on ``lost`` ran out: taken over
    assert again.id == lost
    assert outbox.complete_all(claimed) == 1  # only the item w1 still holds
    assert stored(migrated, kept).done_at == clock.now
    assert stored(migrated, lost).done_at is None
    assert outbox.complete_all([again]) == 1
    assert outbox.complete_all([]) == 0


def test_complete_takes_an_id_with_the_attempt(
    outbox: Outbox, migrated: Engine, clock: FakeClock
) -> None:
    (item_id,) = enqueue(migrated)
    outbox.claim("zendesk", "w1")
    with pytest.raises(OutboxError, match="say which attempt"):
        outbox.complete(item_id)
    assert outbox.complete(item_id, 2) is False
    assert outbox.complete(item_id, 1) is True
    assert outbox.claim("zendesk", "w1") == []


def test_claim_refuses_nonsense(outbox: Outbox) -> None:
    with pytest.raises(OutboxError, match="limit"):
        outbox.claim("zendesk", "w", limit=0)
    with pytest.raises(OutboxError, match="lease"):
        outbox.claim("zendesk", "w", lease=timedelta(0))


def test_a_naive_clock_is_refused(migrated: Engine) -> None:
    outbox = Outbox(migrated, lambda: datetime(2026, 11, 16, 9))
    with pytest.raises(OutboxError, match="naive"):
        outbox.claim("zendesk", "w")


# --- failing, backoff, Retry-After ------------------------------------------------------------


def test_a_retryable_failure_backs_off_exponentially_up_to_the_cap(
    outbox: Outbox, migrated: Engine, clock: FakeClock
) -> None:
    (item_id,) = enqueue(migrated)
    waits = []
    for _ in range(9):
        (item,) = outbox.claim("zendesk", "w1")
        assert outbox.fail(item, item.attempt, "HTTP 503 from Zendesk", True) is True
        row = stored(migrated, item_id)
        assert row.last_error == "HTTP 503 from Zendesk"
        assert row.next_attempt_at is not None
        waits.append(row.next_attempt_at - clock.now)
        clock.now = row.next_attempt_at
    seconds = [int(w.total_seconds()) for w in waits]
    # 30 s, doubling, capped at one hour.
    assert seconds == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]


def test_jitter_only_shortens_the_backoff(migrated: Engine, clock: FakeClock) -> None:
    draws = iter([0.0, 0.5, 0.999])
    outbox = Outbox(migrated, clock, jitter=0.2, rand=lambda: next(draws))
    assert outbox.delay(1) == timedelta(seconds=30)
    assert outbox.delay(2) == timedelta(seconds=54)  # 60 s shortened by 10 %
    assert timedelta(seconds=96) < outbox.delay(3) < timedelta(seconds=120)
    real = Outbox(migrated, clock, jitter=0.2)
    for attempts in range(1, 60):
        delay = real.delay(attempts)
        cap = min(timedelta(hours=1), timedelta(seconds=30) * 2 ** min(attempts - 1, 40))
        assert cap * 0.8 <= delay <= cap


@pytest.mark.parametrize("retry_after", [7200, timedelta(hours=2), 7200.0])
def test_retry_after_is_honoured_over_the_backoff(
    outbox: Outbox, migrated: Engine, clock: FakeClock, retry_after: Any
) -> None:
    (item_id,) = enqueue(migrated)
    (item,) = outbox.claim("zendesk", "w1")
    assert outbox.fail(item, item.attempt, "HTTP 429", True, retry_after=retry_after)
    assert stored(migrated, item_id).next_attempt_at == clock.now + timedelta(hours=2)


def test_a_short_retry_after_is_honoured_too(
    outbox: Outbox, migrated: Engine, clock: FakeClock
) -> None:
    (item_id,) = enqueue(migrated)
    (item,) = outbox.claim("zendesk", "w1")
    outbox.fail(item, item.attempt, "HTTP 429", True, retry_after=2)
    clock.now += timedelta(seconds=2)
    assert [c.id for c in outbox.claim("zendesk", "w1")] == [item_id]


# --- dead letters and replay --------------------------------------------------------------------


def test_a_permanent_failure_is_dead_lettered_then_replayed(
    outbox: Outbox, migrated: Engine, clock: FakeClock
) -> None:
    dead_id, live_id = enqueue(migrated, 2)
    clock.now += timedelta(seconds=1)
    first, _second = outbox.claim("zendesk", "w1")
    error = "HTTP 422: priority 'P9' is not a valid value"
    assert outbox.fail(first, first.attempt, error, False) is True

    row = stored(migrated, dead_id)
    assert (row.done_at, row.next_attempt_at, row.last_error) == (None, None, error)
    (letter,) = outbox.dead_letters()
    assert (letter.id, letter.attempts, letter.last_error, letter.kind) == (
        dead_id,
        1,
        error,
        "set_priority",
    )
    assert outbox.dead_letters("jira") == []
    clock.now += timedelta(days=3)
    assert dead_id not in [c.id for c in outbox.claim("zendesk", "w1")]
    depth = outbox.depth()
    assert (depth.dead, depth.pending) == (1, 1)  # the live one is leased (pending)

    assert outbox.replay(live_id) is False  # not dead
    assert outbox.replay(dead_id) is True
    assert outbox.replay(dead_id) is False  # no longer dead
    assert outbox.dead_letters() == []
    (again,) = [c for c in outbox.claim("zendesk", "w1") if c.id == dead_id]
    assert again.attempt == 2
    assert outbox.complete(again)


def test_an_item_out_of_attempts_is_dead_lettered_with_the_count(
    migrated: Engine, clock: FakeClock
) -> None:
    outbox = Outbox(migrated, clock, max_attempts=3, rand=lambda: 0.0)
    (item_id,) = enqueue(migrated)
    for _ in range(3):
        (item,) = outbox.claim("zendesk", "w1")
        outbox.fail(item, item.attempt, "timeout", True)
        clock.now += timedelta(hours=1)
    row = stored(migrated, item_id)
    assert (row.next_attempt_at, row.done_at) == (None, None)
    assert row.last_error == "gave up after 3 attempts: timeout"
    assert [d.id for d in outbox.dead_letters()] == [item_id]
    # A replay gives it one more try.
    outbox.replay(item_id)
    (item,) = outbox.claim("zendesk", "w1")
    outbox.fail(item, item.attempt, "timeout again", True)
    assert stored(migrated, item_id).last_error == "gave up after 4 attempts: timeout again"


def test_depth_counts_and_ages_the_backlog(
    outbox: Outbox, migrated: Engine, clock: FakeClock
) -> None:
    empty = outbox.depth()
    assert (empty.pending, empty.due, empty.dead, empty.oldest_age) == (0, 0, 0, None)
    enqueue(migrated, 4, step=timedelta(minutes=1))
    enqueue(migrated, 1, target="jira", prefix="j")
    clock.now = T0 + timedelta(minutes=10)
    a, b, c, _d = outbox.claim("zendesk", "w1")
    outbox.complete(a)
    outbox.fail(b, b.attempt, "HTTP 400", False)
    outbox.fail(c, c.attempt, "HTTP 503", True)

    depth = outbox.depth("zendesk")
    # c backs off, d is leased: both pending, neither due; b is dead; a is done.
    assert (depth.pending, depth.due, depth.dead) == (2, 0, 1)
    assert depth.oldest_created_at == T0 + timedelta(minutes=2)
    assert depth.oldest_age == timedelta(minutes=8)
    overall = outbox.depth()
    assert (overall.pending, overall.due, overall.dead) == (3, 1, 1)
    assert overall.oldest_age == timedelta(minutes=10)


# --- flush --------------------------------------------------------------------------------------


def test_flush_sends_retries_and_dead_letters(
    outbox: Outbox, migrated: Engine, clock: FakeClock
) -> None:
    ids = enqueue(migrated, 5)
    clock.now = T0 + timedelta(seconds=10)
    outcomes: dict[int, Callable[[], None]] = {}

    def throttled() -> None:
        raise RetryableWriteError("HTTP 429 Too Many Requests", retry_after=90)

    def refused() -> None:
        raise PermanentWriteError("HTTP 422: tag 'x y' is invalid")

    def broken() -> None:
        raise RuntimeError("GET https://acme.zendesk.com/?token=s3cr3t failed")

    outcomes[ids[1]] = throttled
    outcomes[ids[2]] = refused
    outcomes[ids[3]] = broken
    sent: list[str] = []

    def sender(item: ClaimedItem) -> None:
        outcomes.get(item.id, lambda: None)()
        sent.append(item.idempotency_key)

    report = outbox.flush("zendesk", sender, "w1", limit=2)
    assert (report.sent, report.retrying, report.dead, report.skipped, report.lost) == (
        2,
        2,
        1,
        0,
        0,
    )
    assert report.keys == sent == ["zendesk:k0", "zendesk:k4"]
    throttled_row, refused_row, broken_row = (stored(migrated, i) for i in ids[1:4])
    assert throttled_row.next_attempt_at == clock.now + timedelta(seconds=90)
    assert throttled_row.last_error == "HTTP 429 Too Many Requests"
    assert (refused_row.next_attempt_at, refused_row.last_error) == (
        None,
        "HTTP 422: tag 'x y' is invalid",
    )
    # An unexpected exception: retried, and only its type is stored (never its message).
    assert broken_row.last_error == "unexpected RuntimeError from the sender (see the log)"
    assert broken_row.next_attempt_at == clock.now + timedelta(seconds=30)
    assert all("s3cr3t" not in (row.last_error or "") for row in all_items(migrated))

    # Nothing is due any more: a second flush does nothing.
    assert outbox.flush("zendesk", sender, "w1").sent == 0
    clock.now += timedelta(seconds=90)
    outcomes.clear()
    again = outbox.flush("zendesk", sender, "w1")
    assert again.keys == ["zendesk:k3", "zendesk:k1"]  # in the order they came due


def test_flush_skips_items_whose_lease_ran_out_before_their_turn(
    outbox: Outbox, migrated: Engine, clock: FakeClock
) -> None:
    enqueue(migrated, 3)
    clock.now = T0 + timedelta(seconds=5)
    sent = []

    def slow(item: ClaimedItem) -> None:
        sent.append(item.idempotency_key)
        clock.now += timedelta(minutes=3)  # each send takes 3 of the 5 lease minutes

    report = outbox.flush("zendesk", slow, "w1", limit=3, lease=timedelta(minutes=5), max_batches=1)
    assert sent == ["zendesk:k0", "zendesk:k1"]
    assert (report.sent, report.skipped) == (2, 1)
    # The skipped one is claimed again (attempt 2) once its lease is over.
    (again,) = outbox.claim("zendesk", "w2")
    assert (again.idempotency_key, again.attempt) == ("zendesk:k2", 2)


def test_a_write_sent_after_its_lease_was_taken_over_is_reported_lost(
    outbox: Outbox, migrated: Engine, clock: FakeClock
) -> None:
    enqueue(migrated)
    taken: list[ClaimedItem] = []

    def stuck(item: ClaimedItem) -> None:
        # The send outlives the lease and another worker claims the item meanwhile.
        clock.now = item.lease_until
        taken.extend(outbox.claim("zendesk", "w2"))

    report = outbox.flush("zendesk", stuck, "w1", max_batches=1)
    assert (report.sent, report.lost) == (0, 1)
    assert [t.attempt for t in taken] == [2]
    assert outbox.complete(taken[0]) is True


# --- two flushers at once -----------------------------------------------------------------------


def _real_clock() -> datetime:
    return datetime.now(UTC)


def test_two_flushers_in_two_threads_send_every_write_exactly_once(migrated: Engine) -> None:
    enqueue(migrated, 500, at=_real_clock() - timedelta(hours=1), step=timedelta(0))
    outbox = Outbox(migrated, _real_clock)
    keys: list[str] = []
    by_worker: Counter[str] = Counter()
    lock = threading.Lock()
    barrier = threading.Barrier(2)
    reports = {}

    def flusher(worker: str) -> None:
        def send(item: ClaimedItem) -> None:
            with lock:
                keys.append(item.idempotency_key)
                by_worker[worker] += 1
            time.sleep(0.0002)

        barrier.wait()
        reports[worker] = outbox.flush("zendesk", send, worker, limit=7)

    threads = [threading.Thread(target=flusher, args=(w,)) for w in ("w1", "w2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)

    assert len(keys) == 500
    assert set(Counter(keys).values()) == {1}
    assert all(by_worker[w] > 0 for w in ("w1", "w2")), by_worker
    assert sum(r.sent for r in reports.values()) == 500
    assert sum(r.lost + r.skipped for r in reports.values()) == 0
    items = all_items(migrated)
    assert all(i.done_at is not None and i.next_attempt_at is None for i in items)
    assert {i.attempts for i in items} == {1}


@POSTGRESQL_ONLY  # SQLite is used by a single writer process (see docs/outbox.md)
def test_two_flushers_in_two_processes_send_every_write_exactly_once(
    migrated: Engine, database_url: str, tmp_path: Path
) -> None:
    enqueue(migrated, 500, at=_real_clock() - timedelta(hours=1), step=timedelta(0))
    go = tmp_path / "go"
    outs = [tmp_path / f"w{n}.keys" for n in (1, 2)]
    workers = [
        subprocess.Popen(
            [sys.executable, str(WORKER), database_url, f"w{n}", str(go), str(out)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n, out in zip((1, 2), outs, strict=True)
    ]
    time.sleep(0.3)  # let both import and connect, then start them together
    go.touch()
    for worker in workers:
        _, stderr = worker.communicate(timeout=120)
        assert worker.returncode == 0, stderr
    sent = [out.read_text().split() if out.exists() else [] for out in outs]
    keys = sent[0] + sent[1]
    assert len(keys) == 500
    assert set(Counter(keys).values()) == {1}
    assert all(sent), [len(s) for s in sent]
    assert all(i.done_at is not None for i in all_items(migrated))


@POSTGRESQL_ONLY  # SQLite has no row locks: one writer at a time
def test_postgresql_claims_skip_rows_another_worker_has_locked(
    migrated: Engine, database_url: str, clock: FakeClock
) -> None:
    ids = enqueue(migrated, 4)
    clock.now = T0 + timedelta(minutes=1)
    outbox = Outbox(migrated, clock)
    with psycopg.connect(database_url.replace("+psycopg", "")) as other:
        # Another worker is in the middle of claiming the two oldest items.
        other.execute("SELECT id FROM outbox WHERE id = ANY(%s) FOR UPDATE", ([ids[0], ids[1]],))
        started = time.monotonic()
        claimed = outbox.claim("zendesk", "w1", limit=10)
        assert time.monotonic() - started < 2  # did not wait for the other transaction
        assert [c.id for c in claimed] == ids[2:]
    assert [c.id for c in outbox.claim("zendesk", "w1", limit=10)] == ids[:2]


@SQLITE_ONLY  # PostgreSQL claims lock rows instead
def test_sqlite_claims_take_the_write_lock_as_they_begin(migrated: Engine) -> None:
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(migrated, "before_cursor_execute", record)
    try:
        Outbox(migrated, FakeClock(T0)).claim("zendesk", "w1")
    finally:
        event.remove(migrated, "before_cursor_execute", record)
    assert statements[0] == "BEGIN IMMEDIATE"
    with migrated.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"


def test_recording_a_write_made_rides_out_a_database_restart() -> None:
    """A completion lost sends the write again after its lease: ``complete`` retries for
    about 25 s by default, not the 1.4 s of the other calls; an explicit policy is kept."""
    from sqlalchemy import create_engine

    from slabot.store.outbox import COMPLETE_RETRY
    from slabot.store.retry import RetryPolicy

    engine = create_engine("sqlite://")
    patient = Outbox(engine, lambda: datetime.now(UTC)).complete_retry
    assert patient is COMPLETE_RETRY and patient.attempts == 10
    pauses = [min(0.2 * 2**n, 5.0) for n in range(patient.attempts - 1)]
    assert 20 < sum(pauses) < 30
    strict = RetryPolicy(attempts=1)
    assert Outbox(engine, lambda: datetime.now(UTC), retry=strict).complete_retry is strict
