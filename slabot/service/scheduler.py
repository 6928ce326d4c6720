"""The scheduler: which jobs run when. This module only registers jobs; it runs none.

``make_scheduler`` builds an APScheduler 3 ``BackgroundScheduler`` in the service's time
zone, with a raised ``misfire_grace_time`` (APScheduler's default of one second would skip
a job that a busy process starts ten seconds late), ``coalesce`` (runs missed while the
process was stopped collapse into one) and one instance of each job at a time.

``register_jobs`` adds, for a ``Runtime``:

- ``leader``: the leadership check, in every replica, every scan interval (first at once);
- ``poll:<helpdesk>``: each helpdesk's poller, at its ``poll_interval_seconds``;
- ``flush:<target>``: the outbox flusher of each target system (each helpdesk, Slack), every
  flush interval;
- ``breach-scan``: nudges and breach notices, every scan interval;
- one ``slack-digest:...`` job per configured digest, on its cron schedule and time zone;
- one ``slack-compliance:...`` job per configured compliance summary, likewise.

All but ``leader`` run only in the leader (``jobs.guarded``).
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from slabot.service import jobs
from slabot.service.runtime import Runtime
from slabot.slack.compliance import register_summaries
from slabot.slack.compliance import run_summary as run_compliance
from slabot.slack.config import ComplianceSummary, Digest
from slabot.slack.digests import register_digests

LEADER_JOB = "leader"
BREACH_SCAN_JOB = "breach-scan"


def make_scheduler(timezone: str, misfire_grace_seconds: int) -> BackgroundScheduler:
    """A scheduler (not started) with the service's job defaults."""
    return BackgroundScheduler(
        timezone=ZoneInfo(timezone),
        job_defaults={
            "misfire_grace_time": misfire_grace_seconds,
            "coalesce": True,
            "max_instances": 1,
        },
    )


def register_jobs(scheduler: Any, runtime: Runtime) -> list[str]:
    """Add the service's jobs to ``scheduler``; returns their ids in the order added."""
    service = runtime.settings.service
    zone = ZoneInfo(service.timezone)
    leadership, metrics = runtime.leadership, runtime.metrics
    added: list[str] = []

    def every(seconds: float) -> IntervalTrigger:
        return IntervalTrigger(seconds=seconds, timezone=zone)

    def add(job_id: str, body: Any, seconds: float, *, first: datetime | None = None) -> None:
        extra = {} if first is None else {"next_run_time": first}
        scheduler.add_job(
            jobs.guarded(job_id, body, leadership, metrics, needs_leader=job_id != LEADER_JOB),
            trigger=every(seconds),
            id=job_id,
            name=job_id,
            replace_existing=True,
            misfire_grace_time=service.misfire_grace_seconds,
            coalesce=True,
            max_instances=1,
            **extra,
        )
        added.append(job_id)

    add(LEADER_JOB, leadership.check, service.scan_interval_seconds, first=datetime.now(UTC))
    for name, helpdesk in runtime.helpdesks.items():
        add(
            f"poll:{name}",
            functools.partial(jobs.poll, helpdesk, runtime.health),
            helpdesk.poll_interval,
        )
        add(
            f"flush:{name}",
            functools.partial(
                jobs.flush_helpdesk, helpdesk, runtime.worker_id, runtime.health, metrics
            ),
            service.flush_interval_seconds,
        )
    slack = runtime.slack
    if slack is not None:
        add(
            "flush:slack",
            functools.partial(
                jobs.flush_slack,
                runtime.outbox,
                slack.send,
                runtime.worker_id,
                runtime.health,
                metrics,
            ),
            service.flush_interval_seconds,
        )
    add(
        BREACH_SCAN_JOB,
        functools.partial(
            jobs.breach_scan,
            runtime.engine,
            slack.store if slack is not None else None,
            slack.config if slack is not None else None,
            runtime.clock,
            metrics,
        ),
        service.scan_interval_seconds,
    )
    if slack is not None:

        def run_digest(channel: Digest) -> object:
            job = jobs.guarded(
                f"digest:{channel.channel}",
                functools.partial(jobs.digest, slack.store, runtime.clock, channel),
                leadership,
                metrics,
            )
            return job()

        added.extend(register_digests(scheduler, slack.config, run_digest))

        def run_summary(summary: ComplianceSummary) -> object:
            job = jobs.guarded(
                f"compliance:{summary.channel}",
                functools.partial(run_compliance, slack.store, runtime.clock, summary),
                leadership,
                metrics,
            )
            return job()

        added.extend(register_summaries(scheduler, slack.config, run_summary))
    return added
