"""The job bodies, called as plain functions with a fixed clock against the fake systems."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import START, Clock

from slabot.demo.environment import ZD_ENVIRONMENT, DemoSystems
from slabot.service import jobs
from slabot.service.runtime import Runtime, build_runtime
from slabot.service.settings import load_settings
from slabot.store.migrate import upgrade
from slabot.store.snapshot import Snapshot


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def runtime(
    systems: DemoSystems, config_file: Path, sqlite_url: str, clock: Clock
) -> Iterator[Runtime]:
    settings = load_settings(systems.environ(sqlite_url, config_file))
    built = build_runtime(
        settings,
        clock,
        client_options={"zendesk": {"timeout": 2.0, "job_poll_interval": 0.0}},
    )
    upgrade(built.engine)
    try:
        yield built
    finally:
        built.close()


def sample(number: int = 7, **fields: object) -> Snapshot:
    values: dict[str, object] = {
        "source": "zendesk",
        "external_key": str(number),
        "policy": "zoom",
        "created_at": START,
        "updated_at": START,
        "priority": "P1",
        "plan": "premier",
        "environment": "production",
        "channel": "web",
        "shown": {"priority": "P1", "tags": []},
    }
    values.update(fields)
    return Snapshot(**values)  # type: ignore[arg-type]


def metric(runtime: Runtime, name: str, **labels: str) -> float:
    value = runtime.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_the_breach_scan_owes_a_nudge_at_75_percent_then_the_breach_notice(
    runtime: Runtime, clock: Clock, systems: DemoSystems
) -> None:
    runtime.tickets.ingest(sample())  # zoom premier P1: first response within 1h, 24x7
    slack = runtime.slack
    assert slack is not None

    def scan() -> object:
        return jobs.breach_scan(runtime.engine, slack.store, slack.config, clock, runtime.metrics)

    clock.now = START + timedelta(minutes=44)
    report = scan()
    assert report is not None and report.nudged == 0  # type: ignore[attr-defined]
    clock.now = START + timedelta(minutes=45)
    report = scan()
    assert report.nudged == 2  # type: ignore[attr-defined]  # first response and next update
    assert metric(runtime, "slabot_nudges_total", kind="threshold") == 2
    sent = jobs.flush_slack(runtime.outbox, slack.send, "worker-1", runtime.health, runtime.metrics)
    assert sent.sent == 2
    assert len(systems.slack.calls_to("chat.postMessage")) == 2
    assert metric(runtime, "slabot_outbox_writes_total", target="slack", outcome="sent") == 2
    assert runtime.health.last_success("slack", "flush") == clock.now

    clock.now = START + timedelta(hours=1, seconds=1)
    report = scan()
    assert report.breaches == 2  # type: ignore[attr-defined]
    assert metric(runtime, "slabot_breaches_total") == 2
    assert metric(runtime, "slabot_breached_clocks") == 2
    report = scan()
    assert report.breaches == 0  # type: ignore[attr-defined]  # once per clock cycle


def test_a_poll_applies_the_helpdesk_change_and_the_flush_writes_back(
    runtime: Runtime, clock: Clock, systems: DemoSystems
) -> None:
    zendesk = systems.zendesk
    zendesk.add_user(501, "end-user")
    zendesk.add_ticket(
        1002, requester_id=501, priority="urgent", custom_fields={ZD_ENVIRONMENT: "env_staging"}
    )
    clock.now = START + timedelta(minutes=5)
    helpdesk = runtime.helpdesks["zendesk"]
    report = jobs.poll(helpdesk, runtime.health)
    assert report.error is None
    assert runtime.health.last_success("zendesk", "poll") == clock.now
    written = jobs.flush_helpdesk(helpdesk, "worker-1", runtime.health, runtime.metrics)
    assert written.sent >= 1
    assert zendesk.tickets[1002]["priority"] == "low"  # zoom: P1 outside production is P4
    assert metric(runtime, "slabot_outbox_writes_total", target="zendesk", outcome="sent") >= 1


def test_a_poll_that_fails_is_recorded_with_its_error(
    runtime: Runtime, systems: DemoSystems
) -> None:
    systems.zendesk.fail_next(5, 503)
    helpdesk = runtime.helpdesks["zendesk"]
    report = jobs.poll(helpdesk, runtime.health)
    assert report.error is not None
    snapshot = runtime.health.snapshot()["zendesk"]["poll"]
    assert snapshot["last_error"] and snapshot["failures"] == 1
    assert snapshot["last_success_at"] is None


def test_a_guarded_job_runs_only_in_the_leader_and_never_raises(runtime: Runtime) -> None:
    calls: list[int] = []
    job = jobs.guarded(
        "demo", lambda: calls.append(1) or "done", runtime.leadership, runtime.metrics
    )
    assert job() == "done" and calls == [1]  # SQLite: this process leads
    runtime.leadership.is_leader = False
    assert job() is None and calls == [1]
    runtime.leadership.is_leader = True

    def broken() -> None:
        raise RuntimeError("the helpdesk is on fire")

    assert jobs.guarded("broken", broken, runtime.leadership, runtime.metrics)() is None
    assert metric(runtime, "slabot_job_runs_total", job="demo", outcome="ok") == 1
    assert metric(runtime, "slabot_job_runs_total", job="demo", outcome="skipped") == 1
    assert metric(runtime, "slabot_job_runs_total", job="broken", outcome="error") == 1
