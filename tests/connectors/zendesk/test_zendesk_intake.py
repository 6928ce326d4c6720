"""The webhook intake queue: bounded, coalescing (a ticket's jobs spaced by ``min_interval``),
and never losing a delivery silently."""

from __future__ import annotations

import threading
import time

from connectors.intake import IntakeJob, WebhookIntake


class Deliveries:
    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.forgotten: list[str] = []

    def record(self, _source: str, key: str) -> bool:
        if key in self.seen:
            return False
        self.seen.add(key)
        return True

    def forget(self, _source: str, key: str) -> None:
        self.forgotten.append(key)
        self.seen.discard(key)


def job(key: str, subject: int) -> IntakeJob:
    return IntakeJob("zendesk", key, subject, None)


def test_a_full_queue_answers_busy_and_forgets_the_delivery_for_the_retry() -> None:
    deliveries = Deliveries()
    intake = WebhookIntake(
        "zendesk", lambda _j: None, deliveries.record, deliveries.forget, maxsize=1
    )
    assert intake.submit(job("a", 1)) == "accepted"
    assert intake.submit(job("b", 1)) == "coalesced"  # ticket 1 is already waiting
    assert intake.submit(job("c", 2)) == "busy"
    assert deliveries.forgotten == ["c"]
    assert intake.submit(job("a", 1)) == "duplicate"


def test_the_worker_retries_then_forgets_a_failing_job() -> None:
    deliveries = Deliveries()
    attempts: list[str] = []

    def process(item: IntakeJob) -> None:
        attempts.append(item.delivery_key)
        raise RuntimeError("Zendesk is down")

    intake = WebhookIntake(
        "zendesk", process, deliveries.record, deliveries.forget, retries=3, sleep=lambda _s: None
    )
    intake.start()
    assert intake.submit(job("a", 1)) == "accepted"
    assert intake.drain(5)
    intake.stop()
    assert attempts == ["a", "a", "a"]
    assert deliveries.forgotten == ["a"] and intake.failed == 1


def test_jobs_are_processed_in_order_off_the_request_path() -> None:
    deliveries = Deliveries()
    done: list[int] = []
    intake = WebhookIntake(
        "zendesk",
        lambda item: done.append(int(str(item.subject))),
        deliveries.record,
        deliveries.forget,
    )
    intake.start()
    for number in range(5):
        intake.submit(job(f"k{number}", number))
    assert intake.drain(5)
    intake.stop()
    assert done == [0, 1, 2, 3, 4] and intake.processed == 5


def test_a_tickets_next_job_waits_out_the_interval_while_other_tickets_run() -> None:
    deliveries = Deliveries()
    starts: list[tuple[int, float]] = []

    def process(item: IntakeJob) -> None:
        starts.append((int(str(item.subject)), time.monotonic()))

    intake = WebhookIntake(
        "zendesk", process, deliveries.record, deliveries.forget, min_interval=0.4
    )
    intake.start()
    try:
        assert intake.submit(job("a", 1)) == "accepted"
        assert intake.drain(5)
        assert intake.submit(job("b", 1)) == "accepted"  # held back: ticket 1 just ran
        assert intake.submit(job("c", 2)) == "accepted"
        deadline = time.monotonic() + 5
        while len(starts) < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        # Notices about ticket 1 join its held job, however many.
        assert [intake.submit(job(f"d{n}", 1)) for n in range(50)] == ["coalesced"] * 50
        assert intake.depth == 1
        assert intake.drain(5)
    finally:
        intake.stop()
    assert [subject for subject, _ in starts] == [1, 2, 1]
    assert starts[2][1] - starts[0][1] >= 0.4
    assert starts[1][1] - starts[0][1] < 0.4  # ticket 2 did not wait for ticket 1's interval


def test_a_notice_arriving_while_its_tickets_job_runs_gets_one_more_job_after_it() -> None:
    deliveries = Deliveries()
    running, release = threading.Event(), threading.Event()
    done: list[str] = []

    def process(item: IntakeJob) -> None:
        running.set()
        release.wait(5)
        done.append(item.delivery_key)

    intake = WebhookIntake(
        "zendesk", process, deliveries.record, deliveries.forget, min_interval=0.0
    )
    intake.start()
    try:
        assert intake.submit(job("a", 1)) == "accepted"
        assert running.wait(5)
        # The job in flight may have read the ticket before these changes: one more job.
        assert intake.submit(job("b", 1)) == "accepted"
        assert intake.submit(job("c", 1)) == "coalesced"
        release.set()
        assert intake.drain(5)
    finally:
        intake.stop()
    assert done == ["a", "b"]


def test_stopping_runs_the_held_jobs_at_once() -> None:
    deliveries = Deliveries()
    done: list[str] = []
    intake = WebhookIntake(
        "zendesk",
        lambda item: done.append(item.delivery_key),
        deliveries.record,
        deliveries.forget,
        min_interval=60.0,
    )
    intake.start()
    assert intake.submit(job("a", 1)) == "accepted"
    deadline = time.monotonic() + 5
    while not done and time.monotonic() < deadline:
        time.sleep(0.005)
    assert intake.submit(job("b", 1)) == "accepted"
    began = time.monotonic()
    intake.stop(timeout=5)
    assert time.monotonic() - began < 2  # not the minute the interval asks
    assert done == ["a", "b"]
