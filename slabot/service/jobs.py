"""The scheduled jobs' bodies: plain functions of what they use, tested with a fixed clock.

- ``poll``: one poll of a helpdesk from its stored cursor (the backstop for missed webhooks);
- ``flush_helpdesk`` / ``flush_slack``: send what the outbox owes one target system;
- ``breach_scan``: owe Slack the nudges and breach notices due now (``run_nudges``, which
  owes the same breach notice ``TicketService.record_breaches`` would, under the same
  idempotency key, and also honours business hours and snoozes), and measure how many
  clocks are breached;
- ``digest``: owe one channel its digest.

``guarded`` is what the scheduler actually runs: it skips the body unless this process is
the leader, and counts, times and logs each run; a failing run is logged and counted, and
the next one is tried on schedule.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Engine

from slabot.service.health import Health, refused
from slabot.service.leader import Leadership
from slabot.service.metrics import Metrics
from slabot.service.runtime import Helpdesk, PollResult, WriteResult
from slabot.slack.config import Digest, SlackConfig
from slabot.slack.digests import run_digest
from slabot.slack.nudges import NudgeReport, run_nudges
from slabot.slack.store_access import SlackStore
from slabot.store.breaches import breached_where, count_query
from slabot.store.outbox import FlushReport, Outbox

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
T = TypeVar("T")


def poll(helpdesk: Helpdesk, health: Health) -> PollResult:
    """Poll ``helpdesk`` once; its health records the outcome: ``poll`` whether the helpdesk
    could be read, ``ingest`` whether every ticket read could be applied. A ticket that
    could not be applied does not stop the poll and the cursor moves past it, so this is
    where it stays visible (``/readyz``: the last such ticket and why, and how many polls
    had one) until a poll applies everything again.

    A refusal (401/403: a revoked token, an agent where the export wants an admin) is not
    retried by the poller and used to escape it without a trace in /readyz, which went on
    saying ready while every poll failed: it is recorded as a refusal, then raised for the
    job's log and count."""
    try:
        report = helpdesk.poll()
    except Exception as error:
        health.failed(
            helpdesk.name,
            "poll",
            f"{type(error).__name__}: {error}",
            credentials_refused=refused(error),
        )
        raise
    if report.error is not None:
        health.failed(helpdesk.name, "poll", report.error)
    else:
        health.succeeded(helpdesk.name, "poll")
    if report.errors:
        log.warning(
            "%s poll: %d tickets not applied (first: %s)",
            helpdesk.name,
            len(report.errors),
            report.errors[0],
        )
        health.failed(
            helpdesk.name,
            "ingest",
            f"{len(report.errors)} not applied in the last poll; last: {report.errors[-1]}",
        )
    elif report.error is None:
        health.succeeded(helpdesk.name, "ingest")
    return report


def flush_helpdesk(
    helpdesk: Helpdesk, worker_id: str, health: Health, metrics: Metrics
) -> WriteResult:
    """Send the writes owed to ``helpdesk``."""
    report = helpdesk.flush(worker_id)
    _count_writes(metrics, helpdesk.name, report.sent, report.retrying, report.dead)
    errors: list[str] = getattr(report, "errors", [])
    if report.retrying:
        health.failed(helpdesk.name, "flush", f"{report.retrying} writes to retry")
    elif report.dead and errors:
        health.failed(helpdesk.name, "flush", errors[-1])
    else:
        health.succeeded(helpdesk.name, "flush")
    return report


def flush_slack(
    outbox: Outbox,
    send: Callable[[Any], None],
    worker_id: str,
    health: Health,
    metrics: Metrics,
) -> FlushReport:
    """Send the Slack messages owed (nudges, breach notices, digests)."""
    report = outbox.flush("slack", send, worker_id)
    _count_writes(metrics, "slack", report.sent, report.retrying, report.dead)
    if report.retrying:
        health.failed("slack", "flush", f"{report.retrying} messages to retry")
    else:
        health.succeeded("slack", "flush")
    return report


def breach_scan(
    engine: Engine,
    store: SlackStore | None,
    config: SlackConfig | None,
    clock: Clock,
    metrics: Metrics,
) -> NudgeReport | None:
    """Owe Slack what is due at ``clock()`` (when Slack is enabled); set the breached gauge."""
    report = None
    if store is not None and config is not None:
        report = run_nudges(store, clock, config.nudges)
        metrics.nudges.labels("threshold").inc(report.nudged)
        metrics.nudges.labels("breach").inc(report.breaches)
        metrics.nudges.labels("update").inc(report.updates)
        metrics.nudges.labels("reminder").inc(report.reminders)
        metrics.breaches.inc(report.breaches)
    with engine.connect() as connection:
        count = connection.execute(count_query(breached_where(clock()))).scalar()
    metrics.breached.set(count or 0)
    return report


def digest(store: SlackStore, clock: Clock, channel: Digest) -> bool:
    """Owe ``channel`` its digest as of ``clock()``; False when empty and skipped."""
    return run_digest(store, clock, channel)


def guarded(
    job_id: str,
    body: Callable[[], T],
    leadership: Leadership,
    metrics: Metrics,
    *,
    needs_leader: bool = True,
) -> Callable[[], T | None]:
    """``body`` as a scheduled job: run by the leader only, counted, timed, never raising."""

    def run() -> T | None:
        if needs_leader and not leadership.is_leader:
            metrics.job_runs.labels(job_id, "skipped").inc()
            return None
        started = time.perf_counter()
        try:
            result = body()
        except Exception as error:
            metrics.job_runs.labels(job_id, "error").inc()
            log.error("job %s failed: %s: %s", job_id, type(error).__name__, error, exc_info=True)
            return None
        finally:
            metrics.job_seconds.labels(job_id).observe(time.perf_counter() - started)
        metrics.job_runs.labels(job_id, "ok").inc()
        return result

    run.__name__ = f"job_{job_id}"
    run.__qualname__ = run.__name__
    return run


def _count_writes(metrics: Metrics, target: str, sent: int, retrying: int, dead: int) -> None:
    metrics.writes.labels(target, "sent").inc(sent)
    metrics.writes.labels(target, "retrying").inc(retrying)
    metrics.writes.labels(target, "dead").inc(dead)
