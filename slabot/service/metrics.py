"""Prometheus metrics of one process, served at ``GET /metrics``.

Counters the jobs and endpoints increment:

- ``slabot_outbox_writes_total{target, outcome}``: writes sent (``sent``), failed and
  scheduled again (``retrying``), given up on (``dead``), per target system;
- ``slabot_nudges_total{kind}``: Slack messages owed (``threshold``, ``breach``,
  ``update``, ``reminder``); ``slabot_breaches_total``: breach notices owed;
  ``slabot_breached_clocks``: clocks past due at the last breach scan;
- ``slabot_job_runs_total{job, outcome}`` and ``slabot_job_duration_seconds{job}``.

Read when scraped (``StateCollector``):

- ``slabot_webhooks_total{source, result}``: deliveries by result (``accepted``,
  ``duplicate``, ``unauthorized``, ``malformed``...), from the endpoints' own counts;
- ``slabot_webhook_queue_depth{source}``: deliveries waiting for the worker;
- ``slabot_outbox_pending``, ``_due``, ``_dead`` and ``slabot_outbox_oldest_age_seconds``
  per target system (one query each; ``slabot_database_up`` is 0 when it failed);
- ``slabot_poll_lag_seconds{source}``: time since the last successful poll;
- ``slabot_tickets_unknown_plan{policy, plan}``: stored open tickets naming a plan their
  policy does not know (one grouped query; absent when the database did not answer);
- ``slabot_scheduler_leader``: 1 in the process that runs the scheduled jobs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from slabot.store.outbox import Outbox

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """One process's registry and the counters the jobs update."""

    def __init__(self) -> None:
        # ``*_created`` series (one per counter) only double the output; Prometheus does
        # not need them.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        self.writes = Counter(
            "slabot_outbox_writes",
            "Outbox writes by target system and outcome (sent, retrying, dead).",
            ["target", "outcome"],
            registry=self.registry,
        )
        self.nudges = Counter(
            "slabot_nudges",
            "Slack messages owed by the breach scan (threshold, breach, update, reminder).",
            ["kind"],
            registry=self.registry,
        )
        self.breaches = Counter(
            "slabot_breaches", "Breach notices owed by the breach scan.", registry=self.registry
        )
        self.breached = Gauge(
            "slabot_breached_clocks",
            "Clocks of open tickets past due, as of the last breach scan.",
            registry=self.registry,
        )
        self.job_runs = Counter(
            "slabot_job_runs",
            "Scheduled job runs by job and outcome (ok, error, skipped: not the leader).",
            ["job", "outcome"],
            registry=self.registry,
        )
        self.job_seconds = Histogram(
            "slabot_job_duration_seconds",
            "How long scheduled jobs ran.",
            ["job"],
            registry=self.registry,
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300),
        )

    def add(self, collector: Collector) -> None:
        self.registry.register(collector)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class StateCollector(Collector):
    """Reads the process's state when scraped: webhook counts, queue depths, the outbox,
    poll lag and leadership."""

    def __init__(
        self,
        *,
        clock: Callable[[], datetime],
        outbox: Outbox,
        targets: Callable[[], list[str]],
        webhook_counts: Callable[[], Mapping[str, Mapping[str, int]]],
        queue_depths: Callable[[], Mapping[str, int]],
        last_polls: Callable[[], Mapping[str, datetime | None]],
        is_leader: Callable[[], bool],
        unknown_plans: Callable[[], Mapping[tuple[str, str], int]] | None = None,
    ) -> None:
        self._clock = clock
        self._outbox = outbox
        self._targets = targets
        self._webhook_counts = webhook_counts
        self._queue_depths = queue_depths
        self._last_polls = last_polls
        self._is_leader = is_leader
        self._unknown_plans = unknown_plans

    def describe(self) -> list[Metric]:
        return []  # collected on demand; no fixed description to check against

    def collect(self) -> Iterator[Metric]:
        webhooks = CounterMetricFamily(
            "slabot_webhooks",
            "Webhook deliveries by source and result.",
            labels=["source", "result"],
        )
        for source, counts in sorted(self._webhook_counts().items()):
            for result, count in sorted(counts.items()):
                webhooks.add_metric([source, result], count)
        yield webhooks

        depth = GaugeMetricFamily(
            "slabot_webhook_queue_depth",
            "Webhook deliveries waiting for the worker.",
            labels=["source"],
        )
        for source, waiting in sorted(self._queue_depths().items()):
            depth.add_metric([source], waiting)
        yield depth

        yield from self._outbox_metrics()

        lag = GaugeMetricFamily(
            "slabot_poll_lag_seconds",
            "Seconds since the last successful poll of each helpdesk (absent before the first).",
            labels=["source"],
        )
        now = self._clock()
        for source, last in sorted(self._last_polls().items()):
            if last is not None:
                lag.add_metric([source], max((now - last).total_seconds(), 0.0))
        yield lag

        leader = GaugeMetricFamily(
            "slabot_scheduler_leader", "1 when this process runs the scheduled jobs."
        )
        leader.add_metric([], 1.0 if self._is_leader() else 0.0)
        yield leader

        if self._unknown_plans is not None:
            unknown = GaugeMetricFamily(
                "slabot_tickets_unknown_plan",
                "Stored open tickets naming a plan their policy does not know (tagged, no "
                "targets or the default plan's).",
                labels=["policy", "plan"],
            )
            try:
                unknown_counts = self._unknown_plans()
            except Exception as error:  # a scrape must answer even when the database does not
                log.warning(
                    "metrics: unknown plans could not be counted (%s)", type(error).__name__
                )
            else:
                for (policy, plan), count in sorted(unknown_counts.items()):
                    unknown.add_metric([policy, plan], count)
            yield unknown

    def _outbox_metrics(self) -> Iterator[Metric]:
        pending = GaugeMetricFamily(
            "slabot_outbox_pending", "Writes still to be sent.", labels=["target"]
        )
        due = GaugeMetricFamily(
            "slabot_outbox_due", "Writes whose next attempt has come.", labels=["target"]
        )
        dead = GaugeMetricFamily(
            "slabot_outbox_dead", "Writes given up on (dead letters).", labels=["target"]
        )
        age = GaugeMetricFamily(
            "slabot_outbox_oldest_age_seconds",
            "How long the oldest pending write has waited.",
            labels=["target"],
        )
        up = GaugeMetricFamily("slabot_database_up", "1 when the database answered the scrape.")
        try:
            for target in self._targets():
                measured = self._outbox.depth(target)
                pending.add_metric([target], measured.pending)
                due.add_metric([target], measured.due)
                dead.add_metric([target], measured.dead)
                oldest = measured.oldest_age.total_seconds() if measured.oldest_age else 0.0
                age.add_metric([target], oldest)
        except Exception as error:  # a scrape must answer even when the database does not
            log.warning("metrics: the outbox could not be measured (%s)", type(error).__name__)
            up.add_metric([], 0.0)
        else:
            up.add_metric([], 1.0)
        yield from (pending, due, dead, age, up)
