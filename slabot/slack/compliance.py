"""Scheduled SLA compliance summaries: attainment per priority of the last week or month.

``summary(engine, clock, config)`` is a plain function returning the message's blocks, from
``slabot.store.reports`` (the same figures as ``slabot report --by priority``). ``run_summary``
owes Slack the message through the outbox, once per channel and period (a retried or
doubled run does not post it twice); ``register_summaries`` only registers one APScheduler
job per configured summary, like the digests.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from bot.policy import format_duration
from slabot.slack.blocks import Block, context, escape, header, section
from slabot.slack.config import ComplianceSummary, SlackConfig
from slabot.slack.digests import owe_scheduled_post, register_scheduled_posts
from slabot.slack.i18n import Catalog, catalog
from slabot.slack.store_access import SlackStore
from slabot.slack.texts import when
from slabot.store.reports import Period, ReportRow, compliance_report, period

Clock = Callable[[], datetime]


def last_period(config: ComplianceSummary, now: datetime) -> Period:
    """The last whole week (ISO, Monday to Sunday) or month before ``now``, in the zone.

    >>> from datetime import UTC
    >>> monthly = ComplianceSummary(channel="C0LEADS", schedule="0 9 1 * *")
    >>> last_period(monthly, datetime(2026, 12, 1, 9, tzinfo=UTC)).label
    '2026-11'
    """
    today = now.astimezone(ZoneInfo(config.timezone)).date()
    if config.period == "month":
        last_day = today.replace(day=1) - timedelta(days=1)
        return period(f"{last_day:%Y-%m}", config.timezone)
    monday = today - timedelta(days=today.weekday() + 7)
    year, week, _ = monday.isocalendar()
    return period(f"{year}-W{week:02d}", config.timezone)


def summary(engine: Engine, clock: Clock, config: ComplianceSummary) -> list[Block]:
    """The summary for ``config`` as of ``clock()``."""
    now = clock()
    t = catalog(config.language or "en")
    window = last_period(config, now)
    with Session(engine) as session:
        rows = compliance_report(session, window, ["priority"], now).rows
        total = compliance_report(session, window, [], now).rows
    first = window.start.astimezone(ZoneInfo(config.timezone)).date()
    last = (window.end - timedelta(seconds=1)).astimezone(ZoneInfo(config.timezone)).date()
    blocks: list[Block] = [
        header(t(f"compliance.title.{config.period}", period=window.label)),
        context(
            t(
                "compliance.as_of",
                first=first.isoformat(),
                last=last.isoformat(),
                zone=escape(config.timezone),
                when=when(t, now, None),
            )
        ),
    ]
    if not rows:
        blocks.append(section(t("compliance.empty")))
        return blocks
    lines = [_line(t, str(row.group["priority"]), row) for row in rows]
    blocks.append(section("\n".join(lines)))
    if total:
        blocks.append(section(_line(t, t("compliance.all"), total[0])))
    return blocks


def _line(t: Catalog, name: str, row: ReportRow) -> str:
    attained = row.attainment
    return t(
        "compliance.line",
        priority=escape(name),
        attained="-" if attained is None else f"{attained}",
        met=row.met,
        judged=row.met + row.breached,
        breached=row.breached,
        running=row.running,
        median="-" if row.median_seconds is None else format_duration(row.median_seconds),
        p90="-" if row.p90_seconds is None else format_duration(row.p90_seconds),
        tickets=row.tickets,
        reclassified=row.reclassified_tickets,
    )


def run_summary(store: SlackStore, clock: Clock, config: ComplianceSummary) -> bool:
    """The scheduled job's body: owe Slack the summary; False when owed already for this
    channel, schedule and period."""
    now = clock()
    blocks = summary(store.engine, clock, config)
    t = catalog(config.language or "en")
    window = last_period(config, now)
    text = t(f"compliance.title.{config.period}", period=window.label)
    return owe_scheduled_post(store, "compliance", config, window.label, blocks, text, now)


def job_id(config: ComplianceSummary) -> str:
    return f"slack-compliance:{config.channel}:{config.schedule.replace(' ', '_')}"


def register_summaries(
    scheduler: Any, config: SlackConfig, run: Callable[[ComplianceSummary], object]
) -> list[str]:
    """Add one job per configured summary to an APScheduler 3 scheduler (not started here);
    returns the job ids."""
    return register_scheduled_posts(
        scheduler, "compliance summary", config.compliance, job_id, run, 6 * 3600
    )
