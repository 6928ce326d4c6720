"""The webhook intake queue: bounded, coalescing, and never losing a delivery silently."""

from __future__ import annotations

from connectors.common import IntakeJob, WebhookIntake


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
