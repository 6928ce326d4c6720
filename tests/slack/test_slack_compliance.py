"""Scheduled SLA compliance summaries: the last month's or week's attainment per priority,
in the four languages, owed once per period through the outbox; registration only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from apscheduler.schedulers.background import BackgroundScheduler

from slabot.slack.compliance import last_period, register_summaries, run_summary, summary
from slabot.slack.config import ComplianceSummary
from tests.slack.slack_support import Harness, config, texts

# Bratislava is UTC+1 in November: 09:00 there is 08:00 UTC. No Slovak holiday on these days.
MONDAY_23 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
DECEMBER_1_0900 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def monthly(**fields: Any) -> ComplianceSummary:
    values: dict[str, Any] = {
        "channel": "C0LEADS",
        "schedule": "0 9 1 * *",
        "timezone": "Europe/Bratislava",
        "period": "month",
        "language": "en",
    }
    values.update(fields)
    return ComplianceSummary(**values)


def ticket(
    harness: Harness, key: str, created: datetime, reply: datetime | None, **fields: Any
) -> None:
    """CloudTalk professional (an SLA): first response P1 3h, P2 6h on Bratislava's
    weekdays 09:00-17:00."""
    values: dict[str, Any] = {
        "external_key": key,
        "policy": "cloudtalk",
        "plan": "professional",
        "priority": "P1",
        "created_at": created,
        "updated_at": created,
    }
    values.update(fields)
    harness.clock.now = created
    harness.ingest(**values)
    if reply is not None:
        harness.clock.now = reply
        harness.ingest(**{**values, "updated_at": reply, "first_response_at": reply})


@pytest.fixture
def november(harness: Harness) -> Harness:
    # Met: answered after one business hour.
    ticket(harness, "1", MONDAY_23, MONDAY_23 + timedelta(hours=1))
    # Breached: answered after five business hours (due at three).
    ticket(harness, "2", MONDAY_23 + timedelta(days=1), MONDAY_23 + timedelta(days=1, hours=5))
    # Running: Monday 30th 16:00, not answered by Tuesday 09:00 (one business hour used).
    ticket(harness, "3", datetime(2026, 11, 30, 15, 0, tzinfo=UTC), None)
    # P2, met in 1h30m.
    ticket(
        harness,
        "4",
        MONDAY_23 + timedelta(days=2),
        MONDAY_23 + timedelta(days=2, minutes=90),
        priority="P2",
    )
    # December: not in November's summary.
    ticket(harness, "5", DECEMBER_1_0900 - timedelta(minutes=30), None)
    harness.clock.now = DECEMBER_1_0900
    return harness


def test_the_monthly_summary_gives_each_priority_s_attainment_of_the_last_month(
    november: Harness,
) -> None:
    blocks = summary(november.engine, november.clock, monthly())
    text = texts(blocks)
    assert blocks[0]["text"]["text"] == "SLA compliance, 2026-11"
    assert "Clocks started 2026-11-01 to 2026-11-30 (Europe/Bratislava)" in text
    assert (
        "*P1*: 50.00% met (1 of 2) · 1 breached · 1 running · median 1h, p90 5h of business "
        "time · 3 tickets, 0 reclassified" in text
    )
    assert "*P2*: 100.00% met (1 of 1) · 0 breached · 0 running · median 1h30m, p90 1h30m" in text
    assert "*All priorities*: 66.67% met (2 of 3)" in text


@pytest.mark.parametrize(
    ("language", "title", "line"),
    [
        ("fr", "Conformité SLA, 2026-11", "*P1* : 50.00 % respectés (1 sur 2)"),
        ("it", "Conformità SLA, 2026-11", "*P1*: 50.00% rispettati (1 su 2)"),
        ("pl", "Zgodność z SLA, 2026-11", "*P1*: 50.00% dotrzymanych (1 z 2)"),
    ],
)
def test_the_summary_speaks_the_channel_s_language(
    november: Harness, language: str, title: str, line: str
) -> None:
    blocks = summary(november.engine, november.clock, monthly(language=language))
    assert blocks[0]["text"]["text"] == title
    assert line in texts(blocks)


def test_a_summary_is_owed_once_per_period_and_delivered_through_the_outbox(
    november: Harness,
) -> None:
    assert run_summary(november.services.store, november.clock, monthly()) is True
    november.clock.now += timedelta(hours=3)  # a second run the same day: already owed
    assert run_summary(november.services.store, november.clock, monthly()) is False
    assert november.flush().sent == 1
    (call,) = november.fake.calls_to("chat.postMessage")
    assert call.args["channel"] == "C0LEADS"
    assert call.args["text"] == "SLA compliance, 2026-11"


def test_an_empty_period_says_so(harness: Harness) -> None:
    harness.clock.now = DECEMBER_1_0900
    blocks = summary(harness.engine, harness.clock, monthly(language="it"))
    assert "Nessun tempo è stato avviato in questo periodo." in texts(blocks)


@pytest.mark.parametrize(
    ("period", "now", "label"),
    [
        ("month", datetime(2026, 12, 1, 8, 0, tzinfo=UTC), "2026-11"),
        ("month", datetime(2026, 1, 1, 8, 0, tzinfo=UTC), "2025-12"),
        # Monday 7 December 09:00 in Bratislava: the week before is 2026-W49's previous one.
        ("week", datetime(2026, 12, 7, 8, 0, tzinfo=UTC), "2026-W49"),
        ("week", datetime(2026, 12, 13, 20, 0, tzinfo=UTC), "2026-W49"),
    ],
)
def test_the_last_whole_period_before_the_run(period: str, now: datetime, label: str) -> None:
    assert last_period(monthly(period=period), now).label == label


def test_register_summaries_only_adds_jobs_with_cron_triggers_in_their_zone() -> None:
    loaded = config(
        channels={"C0LEADS": {"language": "pl"}},
        compliance=[
            {"channel": "C0LEADS", "schedule": "0 9 1 * *", "timezone": "Europe/Warsaw"},
            {"channel": "C0TEAM", "schedule": "0 8 * * mon", "period": "week"},
        ],
    )
    assert [c.language for c in loaded.compliance] == ["pl", "en"]
    scheduler = BackgroundScheduler(timezone=UTC)
    ran: list[ComplianceSummary] = []
    ids = register_summaries(scheduler, loaded, ran.append)
    assert ids == ["slack-compliance:C0LEADS:0_9_1_*_*", "slack-compliance:C0TEAM:0_8_*_*_mon"]
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert set(jobs) == set(ids) and not scheduler.running and ran == []
    fire = jobs[ids[0]].trigger.get_next_fire_time(None, datetime(2026, 11, 20, tzinfo=UTC))
    assert fire.isoformat() == "2026-12-01T09:00:00+01:00"


def test_a_schedule_with_numbered_days_is_refused() -> None:
    with pytest.raises(ValueError, match="day of week with names"):
        monthly(schedule="0 9 * * 1")
