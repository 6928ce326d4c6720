"""The outbox's Slack sender: Slack's answers mapped to retry or dead letter, never lost."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from slabot.fakes.slack import FakeSlack
from slabot.store.outbox import ClaimedItem, PermanentWriteError, RetryableWriteError
from tests.slack.slack_support import Harness


def item(kind: str, payload: dict[str, object], ticket_id: int | None = None) -> ClaimedItem:
    now = datetime(2026, 11, 16, 17, 0, tzinfo=UTC)
    return ClaimedItem(1, "slack", ticket_id, kind, payload, f"k-{kind}", 1, now, now)


DIGEST = {
    "channel": "C0SUPPORT",
    "text": "SLA digest",
    "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "hello"}}],
}


def test_a_digest_is_posted_as_owed(harness: Harness, fake: FakeSlack) -> None:
    harness.sender(item("digest", DIGEST))
    (call,) = fake.calls_to("chat.postMessage")
    assert call.args["channel"] == "C0SUPPORT" and call.args["text"] == "SLA digest"


@pytest.mark.parametrize(
    ("fault", "error", "says"),
    [
        ({"status": 429, "retry_after": 0}, RetryableWriteError, "rate limited"),
        ({"status": 500}, RetryableWriteError, "Slack answered 500"),
        ({"status": 503}, RetryableWriteError, "Slack answered 503"),
        ({"status": 200, "error": "internal_error"}, RetryableWriteError, "internal_error"),
        ({"status": 200, "error": "channel_not_found"}, PermanentWriteError, "channel_not_found"),
        ({"status": 200, "error": "not_in_channel"}, PermanentWriteError, "invited to the channel"),
    ],
)
def test_slacks_answers_map_to_retry_or_dead_letter(
    harness: Harness, fake: FakeSlack, fault: dict[str, object], error: type[Exception], says: str
) -> None:
    count = 2 if fault["status"] in (429, 500, 503) else 1  # the client retries once itself
    fake.fail_next(count, method="chat.postMessage", **fault)  # type: ignore[arg-type]
    with pytest.raises(error) as caught:
        harness.sender(item("digest", DIGEST))
    assert says in str(caught.value)
    assert "xoxb" not in str(caught.value)
    if fault["status"] == 429:
        assert isinstance(caught.value, RetryableWriteError) and caught.value.retry_after == 0


def test_an_unknown_kind_or_a_malformed_item_is_dead_lettered(harness: Harness) -> None:
    with pytest.raises(PermanentWriteError, match="unknown kind 'poke'"):
        harness.sender(item("poke", {}))
    with pytest.raises(PermanentWriteError, match="no channel or blocks"):
        harness.sender(item("digest", {"channel": "C0SUPPORT"}))
    with pytest.raises(PermanentWriteError, match="lacks ticket, target or cycle"):
        harness.sender(item("nudge", {"event": "threshold"}))


def test_a_breach_notice_owed_by_the_store_is_sent_too(harness: Harness, fake: FakeSlack) -> None:
    """``TicketService.record_breaches`` owes the same item the nudge job does."""
    harness.ingest()
    harness.clock.now = datetime(2026, 11, 16, 21, 0, tzinfo=UTC)  # first response due
    recorded = harness.tickets.record_breaches()
    assert {b.target for b in recorded} == {"first_response"}
    assert harness.run_nudges().breaches == 0  # already recorded: not owed twice
    assert harness.flush().sent == 1
    call, reply = fake.calls_to("chat.postMessage")  # the message, and its thread's alarm
    assert "scadenza superata" in str(call.args["blocks"])
    assert reply.args["thread_ts"] == call.response["ts"] and "<@U0ANA>" in reply.args["text"]
