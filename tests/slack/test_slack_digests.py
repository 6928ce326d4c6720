"""Digests: a plain function of (store, clock, channel) over business hours, weekends and
holidays; registration only (job ids and triggers); delivery through the outbox."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import holidays
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Engine

from slabot.fakes.slack import FakeSlack
from slabot.slack.config import Digest
from slabot.slack.digests import digest, register_digests
from tests.slack.slack_support import Harness, config, texts

# Friday 2026-11-20 and the Monday after: no public holiday in Slovakia (checked below).
FRIDAY_1500_BRATISLAVA = datetime(2026, 11, 20, 14, 0, tzinfo=UTC)
MONDAY_0900_PARIS = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def channel(**fields: Any) -> Digest:
    values: dict[str, Any] = {
        "channel": "C0SUPPORT",
        "schedule": "0 9 * * mon-fri",
        "timezone": "Europe/Paris",
        "due_within_business_hours": 4,
        "paused_longer_than_hours": 48,
        "language": "en",
    }
    values.update(fields)
    return Digest(**values)


def cloudtalk(harness: Harness, key: str, created: datetime, **fields: Any) -> None:
    """CloudTalk, professional plan (an SLA): first response 3h (P1) on Bratislava's
    weekdays 09:00-17:00 with Slovak holidays."""
    values: dict[str, Any] = {
        "external_key": key,
        "policy": "cloudtalk",
        "plan": "professional",
        "priority": "P1",
        "created_at": created,
        "updated_at": created,
        "channel": None,
    }
    values.update(fields)
    harness.clock.now = created
    harness.ingest(**values)


def test_no_slovak_holiday_falls_on_the_days_these_tests_use() -> None:
    slovak = holidays.country_holidays("SK", years=2026, language="en_US")
    for day in (FRIDAY_1500_BRATISLAVA.date(), MONDAY_0900_PARIS.date()):
        assert day not in slovak


def test_the_digest_lists_the_most_urgent_first_with_owners_and_links(
    harness: Harness,
) -> None:
    # P1, 3 business hours: due Monday 10:00 Bratislava, one business hour after the
    # digest (not 67 elapsed).
    cloudtalk(harness, "1", FRIDAY_1500_BRATISLAVA)
    # P2, 6 business hours: due Monday 13:00, exactly 4 business hours away: listed.
    cloudtalk(harness, "2", FRIDAY_1500_BRATISLAVA, priority="P2")
    # Due Monday 14:00, five business hours away: not listed.
    cloudtalk(harness, "3", FRIDAY_1500_BRATISLAVA + timedelta(hours=1), priority="P2")
    # Zoom premier P2 (an SLO): created the Tuesday before, long breached.
    harness.clock.now = datetime(2026, 11, 17, 17, 0, tzinfo=UTC)
    harness.ingest(external_key="4", created_at=harness.clock.now, updated_at=harness.clock.now)
    # Waiting on the customer since Thursday: more than 48 hours by Monday 09:00.
    thursday = datetime(2026, 11, 19, 16, 0, tzinfo=UTC)
    harness.clock.now = thursday
    harness.ingest(
        external_key="5",
        created_at=thursday - timedelta(hours=1),
        updated_at=thursday,
        status="pending",
        first_response_at=thursday,
        last_agent_update_at=thursday,
    )
    # A CloudTalk P1 nobody is assigned, breached since Friday: the most urgent of all,
    # although its breach is younger than ZD-4's.
    cloudtalk(
        harness,
        "6",
        FRIDAY_1500_BRATISLAVA - timedelta(hours=5),
        shown={"priority": "P1", "tags": []},
    )

    harness.clock.now = MONDAY_0900_PARIS
    blocks = digest(harness.services.store, harness.clock, channel())
    assert blocks is not None
    shown = texts(blocks)
    assert blocks[0]["text"]["text"] == "SLA digest"  # plain text: no instant in a zone
    # The digest's own time is a <!date> token too: every reader sees one zone, theirs.
    assert blocks[1]["elements"][0]["text"].startswith("As of <!date^1795420800^")
    assert "CET" not in shown
    assert "2 breached · 2 due within 4 business hours · 1 waiting on the customer" in shown
    sections = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    assert [section.splitlines()[0] for section in sections] == [
        # Two policies (as routing gives them): each level is named with its policy's title.
        "*Breached · P1 Business Critical · CloudTalk support policy*",
        "*Breached · P2 High · Zoom support response times*",
        "*Due soon · P1 Business Critical · CloudTalk support policy*",
        "*Due soon · P2 Degraded Service · CloudTalk support policy*",
        "*Waiting on the customer · P2 High · Zoom support response times*",
    ]
    assert "ZD-6> First response: breached, was due <!date^" in sections[0]
    assert sections[0].endswith(
        "· professional (SLA (with service credits)) · :warning: *Unassigned*"
    )
    assert (
        ":rotating_light: <https://acme.zendesk.com/agent/tickets/4|ZD-4> First response, "
        "Restoration, Next update: breached, was due <!date^1794949200^" in sections[1]
    )
    assert sections[1].endswith("· premier (SLO (objective, no credits)) · ana@example.com")
    assert (
        "<https://acme.zendesk.com/agent/tickets/1|ZD-1> First response: due <!date^" in sections[2]
    )
    assert "ZD-2" in sections[3]
    assert "ZD-3" not in shown  # five business hours away
    assert "ZD-5>: waiting on the customer since" in sections[4]


def test_due_within_business_hours_counts_across_the_weekend(harness: Harness) -> None:
    cloudtalk(harness, "1", FRIDAY_1500_BRATISLAVA)  # due Monday 10:00 Bratislava
    friday_1600 = FRIDAY_1500_BRATISLAVA + timedelta(hours=1)
    harness.clock.now = friday_1600
    two_hours = digest(
        harness.services.store, harness.clock, channel(due_within_business_hours=1.5)
    )
    assert two_hours is not None and len(two_hours) == 1  # 2 business hours away: nothing
    harness.clock.now = friday_1600
    listed = digest(harness.services.store, harness.clock, channel(due_within_business_hours=2))
    assert listed is not None and "ZD-1" in texts(listed)  # 66 elapsed hours, 2 business


def test_a_holiday_is_not_counted_as_business_time(harness: Harness) -> None:
    slovak = set(holidays.country_holidays("SK", years=2026, language="en_US"))
    holiday = min(
        day
        for day in slovak
        if day.weekday() in (1, 2, 3)
        and day - timedelta(days=1) not in slovak
        and day + timedelta(days=1) not in slovak
    )
    bratislava = ZoneInfo("Europe/Bratislava")
    eve = datetime.combine(holiday - timedelta(days=1), time(16), bratislava).astimezone(UTC)
    # P1, 3 business hours from 16:00 on the eve: 1h that day, 2h on the day after the holiday.
    cloudtalk(harness, "1", eve)
    harness.clock.now = eve + timedelta(hours=1)  # closing time on the eve
    view = harness.services.store.view(1, harness.clock.now)
    assert view is not None
    due = view.decision.targets["first_response"].due
    assert due is not None and due.astimezone(bratislava).date() == holiday + timedelta(days=1)
    # 2 business hours away, 42 elapsed; counting the holiday as open would make it 10.
    blocks = digest(harness.services.store, harness.clock, channel(due_within_business_hours=2))
    assert blocks is not None and "ZD-1" in texts(blocks)
    again = digest(harness.services.store, harness.clock, channel(due_within_business_hours=1.5))
    assert again is not None and "ZD-1" not in texts(again)


def test_an_empty_digest_says_so_in_one_line_or_is_skipped(harness: Harness) -> None:
    harness.clock.now = MONDAY_0900_PARIS
    blocks = digest(harness.services.store, harness.clock, channel(language="it"))
    assert blocks is not None and len(blocks) == 1
    assert texts(blocks).startswith(":white_check_mark: Niente da segnalare")
    assert digest(harness.services.store, harness.clock, channel(when_empty="skip")) is None
    skipping = config(
        digests=[{"channel": "C0SUPPORT", "schedule": "0 9 * * mon-fri", "when_empty": "skip"}]
    )
    harness.config = skipping
    assert harness.run_digest() is False
    assert harness.slack_items() == []


def test_a_digest_is_delivered_through_the_outbox_even_after_slack_failed(
    harness: Harness, fake: FakeSlack
) -> None:
    cloudtalk(harness, "1", FRIDAY_1500_BRATISLAVA)
    harness.clock.now = MONDAY_0900_PARIS
    assert harness.run_digest() is True
    assert harness.run_digest() is False  # the same minute: owed once
    fake.fail_next(1, 503, method="chat.postMessage")
    assert harness.flush().retrying == 1
    harness.clock.now += timedelta(minutes=5)
    assert harness.flush().sent == 1
    (call,) = fake.calls_to("chat.postMessage")
    assert call.args["channel"] == "C0SUPPORT"
    assert "ZD-1" in texts(call.args["blocks"])
    assert call.args["text"].startswith("SLA digest, <!date^1795420800^")


def test_the_digest_language_follows_the_channel() -> None:
    loaded = config(
        channels={"C0SUPPORT": {"language": "fr"}},
        digests=[
            {"channel": "C0SUPPORT", "schedule": "0 9 * * mon-fri"},
            {"channel": "C0SUPPORT", "schedule": "0 16 * * fri", "language": "pl"},
            {"channel": "C0OTHER", "schedule": "0 9 * * mon"},
        ],
    )
    assert [d.language for d in loaded.digests] == ["fr", "pl", "en"]


def test_register_digests_only_adds_jobs_with_cron_triggers_in_the_channels_zone() -> None:
    loaded = config(
        digests=[
            {"channel": "C0SUPPORT", "schedule": "0 9 * * mon-fri", "timezone": "Europe/Paris"},
            {"channel": "C0BILLING", "schedule": "30 16 * * fri", "timezone": "America/New_York"},
        ]
    )
    scheduler = BackgroundScheduler(timezone=UTC)
    ran: list[Digest] = []
    ids = register_digests(scheduler, loaded, ran.append)
    assert ids == [
        "slack-digest:C0SUPPORT:0_9_*_*_mon-fri",
        "slack-digest:C0BILLING:30_16_*_*_fri",
    ]
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert set(jobs) == set(ids) and not scheduler.running and ran == []
    sunday_noon = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    paris = jobs[ids[0]].trigger.get_next_fire_time(None, sunday_noon)
    assert paris.isoformat() == "2026-11-23T09:00:00+01:00"  # Monday, not Sunday
    new_york = jobs[ids[1]].trigger.get_next_fire_time(None, sunday_noon)
    assert new_york.isoformat() == "2026-11-27T16:30:00-05:00"
    assert jobs[ids[0]].misfire_grace_time == 3600 and jobs[ids[0]].max_instances == 1
    assert jobs[ids[0]].args[0].channel == "C0SUPPORT"


def test_the_digest_on_postgresql(
    make_harness: Callable[..., Harness], fake: FakeSlack, pg_engine: Engine
) -> None:
    harness = make_harness(pg_engine)
    cloudtalk(harness, "1", FRIDAY_1500_BRATISLAVA)
    harness.clock.now = MONDAY_0900_PARIS
    assert harness.run_digest() is True
    assert harness.flush().sent == 1
    (call,) = fake.calls_to("chat.postMessage")
    assert "ZD-1" in texts(call.args["blocks"])
