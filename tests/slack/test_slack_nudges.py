"""Nudges driven by a fixed clock: thresholds, business hours, weekends, holidays, routing,
updates in place, snoozes, and Slack failing (429, 5xx, down) without losing a message."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import holidays
import pytest
from sqlalchemy import Engine

from slabot.fakes.slack import FakeSlack
from tests.slack.slack_support import ASSIGNEE, MONDAY_0900_LA, Clock, Harness, texts

LA_OFFSET = timedelta(hours=8)  # Los Angeles in November (PST)
FIRST_RESPONSE_ONLY = {"thresholds": {"restoration": [], "next_update": []}}


def la(day: date, hour: int, minute: int = 0) -> datetime:
    """A wall-clock time in Los Angeles (November: UTC-8) as a UTC instant."""
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC) + LA_OFFSET


def posted(fake: FakeSlack) -> list[dict[str, object]]:
    """Top-level messages (one per ticket); replies in their threads are ``replies``."""
    return [c.args for c in fake.calls_to("chat.postMessage") if not c.args.get("thread_ts")]


def replies(fake: FakeSlack) -> list[dict[str, object]]:
    return [c.args for c in fake.calls_to("chat.postMessage") if c.args.get("thread_ts")]


def updated(fake: FakeSlack) -> list[dict[str, object]]:
    return [call.args for call in fake.calls_to("chat.update")]


def step(harness: Harness, at: datetime) -> None:
    """Move the clock, run the nudge job, flush the outbox to Slack."""
    harness.clock.now = at
    harness.run_nudges()
    harness.flush()


# --- thresholds and routing ------------------------------------------------------------------


def test_75_percent_of_the_first_response_nudges_the_assignee_by_direct_message_in_italian(
    make_harness: Callable[..., Harness], fake: FakeSlack
) -> None:
    harness = make_harness(nudges=FIRST_RESPONSE_ONLY)
    harness.ingest()  # Monday 09:00 LA; first response 4 business hours: due 13:00
    step(harness, MONDAY_0900_LA + timedelta(hours=2, minutes=59))
    assert posted(fake) == []

    step(harness, MONDAY_0900_LA + timedelta(hours=3))  # 12:00 LA: 75% of 4h
    (message,) = posted(fake)
    assert message["channel"] == "D0ANA"  # users.lookupByEmail -> conversations.open
    shown = texts(message["blocks"])
    assert "ZD-1001" in shown and "Prima risposta" in shown and "75%" in shown
    assert "lun 16 nov 22:00 CET" in shown  # due 13:00 LA in the assignee's zone (Rome)
    assert "Sei l'assegnatario." in shown
    assert fake.calls_to("users.lookupByEmail")[0].args["email"] == "ana@example.com"
    (nudge,) = harness.nudges()
    assert (nudge.target, nudge.threshold, nudge.channel) == ("first_response", 75, "D0ANA")
    assert nudge.payload["ts"] and nudge.payload["language"] == "it"


def test_each_threshold_is_nudged_once_per_clock_cycle(
    make_harness: Callable[..., Harness], fake: FakeSlack
) -> None:
    harness = make_harness(nudges=FIRST_RESPONSE_ONLY)
    harness.ingest()
    for minutes in (180, 185, 190, 200):
        step(harness, MONDAY_0900_LA + timedelta(minutes=minutes))
    assert len(posted(fake)) == 1
    assert [n.threshold for n in harness.nudges()] == [75]


def test_the_breach_rewrites_the_nudge_in_place_and_meeting_the_target_closes_it(
    make_harness: Callable[..., Harness], fake: FakeSlack
) -> None:
    harness = make_harness(nudges=FIRST_RESPONSE_ONLY)
    harness.ingest()
    step(harness, MONDAY_0900_LA + timedelta(hours=3))
    (message,) = posted(fake)
    step(harness, MONDAY_0900_LA + timedelta(hours=4))  # 13:00 LA: due, breached
    assert len(posted(fake)) == 1
    (update,) = updated(fake)
    assert update["ts"] == fake.calls_to("chat.postMessage")[0].response["ts"]
    assert "scadenza superata" in texts(update["blocks"])
    assert [n.threshold for n in harness.nudges()] == [75, 100]

    # The agent answers late: the message says so and loses its buttons.
    reply = MONDAY_0900_LA + timedelta(hours=4, minutes=10)
    harness.clock.now = reply
    harness.ingest(updated_at=reply, first_response_at=reply, last_agent_update_at=reply)
    step(harness, reply + timedelta(minutes=1))
    final = updated(fake)[-1]
    assert "fatto dopo la scadenza" in texts(final["blocks"])
    assert all(block["type"] != "actions" for block in final["blocks"])  # type: ignore[attr-defined]
    step(harness, reply + timedelta(minutes=5))
    assert len(updated(fake)) == 2  # closed: not updated again
    assert message["channel"] == "D0ANA"


def test_a_breached_update_clock_answered_late_says_so_when_its_new_cycle_begins(
    make_harness: Callable[..., Harness], fake: FakeSlack
) -> None:
    # The next update (24 h around the clock) breaches; the agent's late update starts a new
    # cycle of that clock. The breach notice used to be rewritten as "met" then.
    harness = make_harness(nudges={"thresholds": {"first_response": [], "restoration": []}})
    harness.ingest()
    step(harness, MONDAY_0900_LA + timedelta(hours=18))  # 75%
    step(harness, MONDAY_0900_LA + timedelta(hours=24))  # the breach, in place
    (message,) = posted(fake)
    assert "scadenza superata" in texts(updated(fake)[-1]["blocks"])
    reply = MONDAY_0900_LA + timedelta(hours=25)
    harness.clock.now = reply
    harness.ingest(updated_at=reply, first_response_at=reply, last_agent_update_at=reply)
    step(harness, reply + timedelta(minutes=1))
    final = updated(fake)[-1]
    assert final["ts"] == fake.calls_to("chat.postMessage")[0].response["ts"]
    assert "fatto dopo la scadenza" in texts(final["blocks"])
    assert "obiettivo rispettato" not in texts(final["blocks"])
    assert message["channel"] == "D0ANA"


def test_an_answer_before_the_due_time_turns_the_nudge_into_met(
    make_harness: Callable[..., Harness], fake: FakeSlack
) -> None:
    harness = make_harness(nudges=FIRST_RESPONSE_ONLY)
    harness.ingest()
    step(harness, MONDAY_0900_LA + timedelta(hours=3))
    reply = MONDAY_0900_LA + timedelta(hours=3, minutes=30)
    harness.clock.now = reply
    harness.ingest(updated_at=reply, first_response_at=reply, last_agent_update_at=reply)
    step(harness, reply + timedelta(minutes=1))
    step(harness, MONDAY_0900_LA + timedelta(hours=5))  # past the due time: no breach
    (update,) = updated(fake)
    assert "obiettivo rispettato" in texts(update["blocks"])
    assert [n.threshold for n in harness.nudges()] == [75]


def test_without_an_assignee_in_slack_the_queue_channel_is_nudged_in_its_language(
    make_harness: Callable[..., Harness], fake: FakeSlack
) -> None:
    harness = make_harness(nudges=FIRST_RESPONSE_ONLY)
    harness.ingest(shown={"assignee_email": "nobody@example.com", "queue": "billing"})
    harness.ingest(
        external_key="1002",
        shown={"assignee_email": "nobody@example.com", "queue": "unknown-queue"},
    )
    step(harness, MONDAY_0900_LA + timedelta(hours=3))
    by_channel = {m["channel"]: texts(m["blocks"]) for m in posted(fake)}
    assert set(by_channel) == {"C0BILLING", "C0SUPPORT"}
    assert "Pierwsza odpowiedź" in by_channel["C0BILLING"]  # the channel speaks Polish
    assert "Kolejka billing" in by_channel["C0BILLING"]
    assert "<!date^" in by_channel["C0SUPPORT"]  # each reader sees their own zone
    assert len(fake.calls_to("users.lookupByEmail")) == 1  # the miss is cached too


def test_a_ticket_with_no_place_in_slack_is_dead_lettered_with_what_to_configure(
    make_harness: Callable[..., Harness], fake: FakeSlack
) -> None:
    harness = make_harness(nudges={**FIRST_RESPONSE_ONLY, "default_channel": None})
    harness.ingest(shown={})
    step(harness, MONDAY_0900_LA + timedelta(hours=3))
    assert posted(fake) == []
    (dead,) = harness.outbox.dead_letters("slack")
    assert "slack.nudges.default_channel" in (dead.last_error or "")


# --- business hours, weekends, holidays --------------------------------------------------------


def test_a_threshold_reached_before_a_weekend_waits_for_monday_09_00(
    make_harness: Callable[..., Harness], fake: FakeSlack
) -> None:
    harness = make_harness(nudges=FIRST_RESPONSE_ONLY)
    friday = date(2026, 11, 20)
    harness.clock.now = la(friday, 13, 30)
    harness.ingest(created_at=la(friday, 13, 30), updated_at=la(friday, 13, 30))
    # 75% of 4h is Friday 16:30; the job did not run until after closing.
    for at in (
        la(friday, 17, 30),
        la(friday + timedelta(days=1), 12),
        la(friday + timedelta(days=3), 8, 59),
    ):
        step(harness, at)
        assert posted(fake) == [], at
    step(harness, la(friday + timedelta(days=3), 9, 0))
    assert len(posted(fake)) == 1
    # Due Monday 09:30 (one business hour left on Friday at 16:30): the breach follows.
    step(harness, la(friday + timedelta(days=3), 9, 30))
    assert "scadenza superata" in texts(updated(fake)[-1]["blocks"])


def test_a_public_holiday_of_the_customers_country_holds_the_nudge(
    make_harness: Callable[..., Harness], fake: FakeSlack
) -> None:
    harness = make_harness(nudges=FIRST_RESPONSE_ONLY)
    us = holidays.country_holidays("US", years=2026, language="en_US")
    thanksgiving = next(day for day, name in us.items() if name.startswith("Thanksgiving"))
    eve = thanksgiving - timedelta(days=1)
    harness.clock.now = la(eve, 13, 30)
    harness.ingest(created_at=la(eve, 13, 30), updated_at=la(eve, 13, 30))
    for at in (la(eve, 17, 1), la(thanksgiving, 10), la(thanksgiving, 16)):
        step(harness, at)
    assert posted(fake) == []
    step(harness, la(thanksgiving + timedelta(days=1), 9, 0))
    assert len(posted(fake)) == 1


def test_a_target_counted_around_the_clock_is_nudged_on_a_sunday(
    make_harness: Callable[..., Harness], fake: FakeSlack
) -> None:
    harness = make_harness(nudges={"thresholds": {"first_response": [], "restoration": []}})
    saturday = date(2026, 11, 21)
    harness.clock.now = la(saturday, 18)
    harness.ingest(created_at=la(saturday, 18), updated_at=la(saturday, 18))
    step(harness, la(saturday, 18) + timedelta(hours=18))  # Sunday 12:00: 75% of 24h
    (message,) = posted(fake)
    assert "Prossimo aggiornamento" in texts(message["blocks"])


# --- reclassification and snoozes update the message in place -----------------------------------


def test_a_reclassification_rewrites_the_open_nudge(
    make_harness: Callable[..., Harness], fake: FakeSlack
) -> None:
    harness = make_harness(nudges=FIRST_RESPONSE_ONLY)
    harness.ingest()
    step(harness, MONDAY_0900_LA + timedelta(hours=3))
    harness.command("reclassify ZD-1001 P3 not that urgent after all")
    fake.wait_responses()
    harness.flush()
    (update,) = updated(fake)
    shown = texts(update["blocks"])
    assert "P3 Medium" in shown and "not that urgent after all" in shown


def test_a_breach_notice_no_longer_true_when_sent_is_not_posted(
    make_harness: Callable[..., Harness], fake: FakeSlack
) -> None:
    harness = make_harness(
        nudges={"thresholds": {"first_response": [1.0], "restoration": [], "next_update": []}}
    )
    harness.ingest()
    harness.clock.now = MONDAY_0900_LA + timedelta(hours=4)  # first response due: breached
    assert harness.run_nudges().breaches == 1
    # Before the outbox runs, an agent moves the ticket to P3: due at the next day's close.
    harness.tickets.reclassify("zendesk", "1001", "P3", "lead", "minor after all", "slack")
    assert harness.flush().sent == 1
    assert posted(fake) == []


def test_snooze_asks_why_keeps_the_audit_and_reminds_when_it_ends(
    make_harness: Callable[..., Harness], fake: FakeSlack
) -> None:
    harness = make_harness(
        thresholds=(0.5, 0.75, 1.0),
        nudges={
            "thresholds": {"first_response": [0.5, 0.75, 1.0], "restoration": [], "next_update": []}
        },
    )
    harness.ingest()
    step(harness, MONDAY_0900_LA + timedelta(hours=2))  # 50%
    (nudge,) = harness.nudges()
    harness.click("sla_snooze_1h", str(nudge.id), user=ASSIGNEE)
    (modal,) = [c.args for c in fake.wait_calls("views.open")]
    view = modal["view"]
    view = json.loads(view) if isinstance(view, str) else view
    assert view["callback_id"] == "sla_snooze_modal"

    refused = harness.submit(
        "sla_snooze_modal", {"nudge": nudge.id, "hours": 1}, {"reason": "  "}, user=ASSIGNEE
    )
    assert json.loads(str(refused.body))["response_action"] == "errors"

    answer = harness.submit(
        "sla_snooze_modal",
        {"nudge": nudge.id, "hours": 1},
        {"reason": "customer on a call"},
        user=ASSIGNEE,
    )
    assert json.loads(str(answer.body))["response_action"] == "update"
    (snoozed,) = harness.nudges()
    (entry,) = snoozed.payload["snoozes"]
    assert entry["by"] == ASSIGNEE and entry["reason"] == "customer on a call"
    harness.flush()
    assert "customer on a call" in texts(updated(fake)[-1]["blocks"])

    step(harness, MONDAY_0900_LA + timedelta(hours=2, minutes=30))  # 75% while snoozed: held
    assert len(posted(fake)) == 1
    step(harness, MONDAY_0900_LA + timedelta(hours=3))  # snooze over: a reminder, then 75%
    # The reminder joins the thread of the ticket's message (one message per ticket).
    reminders = [m for m in replies(fake) if "Promemoria" in texts(m["blocks"])]
    assert len(reminders) == 1
    assert reminders[0]["thread_ts"] == fake.calls_to("chat.postMessage")[0].response["ts"]


# --- Slack failing -------------------------------------------------------------------------------


def test_a_rate_limit_is_retried_after_slacks_retry_after(
    make_harness: Callable[..., Harness], fake: FakeSlack
) -> None:
    harness = make_harness(nudges=FIRST_RESPONSE_ONLY)
    harness.ingest()
    harness.clock.now = MONDAY_0900_LA + timedelta(hours=3)
    harness.run_nudges()
    # The client retries a 429 once by itself; the second one reaches the outbox.
    fake.fail_next(2, 429, method="chat.postMessage", retry_after=0)
    report = harness.outbox.flush("slack", harness.sender, "test-worker", max_batches=1)
    assert (report.sent, report.retrying) == (0, 1)
    (item,) = [i for i in harness.slack_items() if i.done_at is None]
    assert "rate limited" in (item.last_error or "")
    assert item.next_attempt_at == harness.clock.now  # Retry-After: 0
    assert harness.flush().sent == 1
    assert len(posted(fake)) == 1


@pytest.mark.parametrize("status", [500, 503])
def test_slack_errors_keep_the_nudge_in_the_outbox_until_slack_is_back(
    make_harness: Callable[..., Harness], fake: FakeSlack, status: int
) -> None:
    harness = make_harness(nudges=FIRST_RESPONSE_ONLY)
    harness.ingest()
    harness.clock.now = MONDAY_0900_LA + timedelta(hours=3)
    harness.run_nudges()
    fake.fail_next(1, status, method="chat.postMessage")
    assert harness.flush().retrying == 1
    assert posted(fake) == []
    harness.clock.now += timedelta(minutes=5)
    assert harness.flush().sent == 1
    assert len(posted(fake)) == 1


def test_slack_unreachable_delays_nudges_and_never_drops_them(
    make_harness: Callable[..., Harness], fake: FakeSlack
) -> None:
    harness = make_harness(nudges=FIRST_RESPONSE_ONLY)
    harness.ingest()
    harness.clock.now = MONDAY_0900_LA + timedelta(hours=3)
    harness.run_nudges()
    fake.down = True
    for _ in range(2):
        report = harness.flush()
        assert report.retrying == 1 and report.dead == 0
        harness.clock.now += timedelta(hours=1)
    (item,) = [i for i in harness.slack_items() if i.done_at is None]
    assert "Slack unreachable" in (item.last_error or "") and "xoxb" not in (item.last_error or "")
    fake.down = False
    assert harness.flush().sent == 1
    assert len(posted(fake)) == 1


# --- PostgreSQL ---------------------------------------------------------------------------------


def test_the_nudge_flow_on_postgresql(
    make_harness: Callable[..., Harness], fake: FakeSlack, pg_engine: Engine, clock: Clock
) -> None:
    harness = make_harness(pg_engine, nudges=FIRST_RESPONSE_ONLY)
    harness.ingest()
    step(harness, MONDAY_0900_LA + timedelta(hours=3))
    step(harness, MONDAY_0900_LA + timedelta(hours=3, minutes=5))
    step(harness, MONDAY_0900_LA + timedelta(hours=4))
    assert len(posted(fake)) == 1 and len(updated(fake)) == 1
    assert [n.threshold for n in harness.nudges()] == [75, 100]
