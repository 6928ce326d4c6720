"""The scheduler module only registers jobs: their ids, triggers and defaults, none run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from slabot.demo.environment import CONFIG, write_config
from slabot.service.runtime import Runtime, build_runtime
from slabot.service.scheduler import make_scheduler, register_jobs
from slabot.service.settings import load_settings

ENVIRON = {
    "ZENDESK_URL": "http://127.0.0.1:9",
    "ZENDESK_EMAIL": "bot@example.com",
    "ZENDESK_API_TOKEN": "zendesk-token",
    "ZENDESK_WEBHOOK_SECRET": "zendesk-secret",
    "JIRA_URL": "http://127.0.0.1:9",
    "JIRA_EMAIL": "bot@example.com",
    "JIRA_API_TOKEN": "jira-token",
    "JIRA_WEBHOOK_SECRET": "jira-secret",
    "SLACK_BOT_TOKEN": "xoxb-slack",
    "SLACK_SIGNING_SECRET": "slack-secret",
    "SLACK_API_URL": "http://127.0.0.1:9/api/",
}


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    config = write_config(
        tmp_path / "slabot.yaml",
        {"scan_interval_seconds": 30, "flush_interval_seconds": 5, "timezone": "Europe/Paris"},
    )
    settings = load_settings(
        {**ENVIRON, "SLABOT_CONFIG": str(config), "DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}
    )
    built = build_runtime(settings)
    try:
        yield built
    finally:
        built.close()


def test_every_job_is_registered_with_its_trigger_and_none_runs(runtime: Runtime) -> None:
    scheduler = make_scheduler("Europe/Paris", 300)
    ids = register_jobs(scheduler, runtime)
    assert ids == [
        "leader",
        "poll:zendesk",
        "flush:zendesk",
        "poll:jira",
        "flush:jira",
        "flush:slack",
        "breach-scan",
        "slack-digest:C0SUPPORT:0_9_*_*_mon-fri",
    ]
    assert not scheduler.running
    intervals = {
        job.id: job.trigger.interval
        for job in scheduler.get_jobs()
        if isinstance(job.trigger, IntervalTrigger)
    }
    assert intervals == {
        "leader": timedelta(seconds=30),
        "poll:zendesk": timedelta(seconds=60),
        "flush:zendesk": timedelta(seconds=5),
        "poll:jira": timedelta(seconds=60),
        "flush:jira": timedelta(seconds=5),
        "flush:slack": timedelta(seconds=5),
        "breach-scan": timedelta(seconds=30),
    }
    digest = scheduler.get_job("slack-digest:C0SUPPORT:0_9_*_*_mon-fri")
    assert isinstance(digest.trigger, CronTrigger)
    fields = {f.name: str(f) for f in digest.trigger.fields}
    assert (fields["hour"], fields["minute"], fields["day_of_week"]) == ("9", "0", "mon-fri")
    assert str(digest.trigger.timezone) == "Europe/Paris"
    assert digest.misfire_grace_time == 3600


def test_jobs_tolerate_lateness_and_coalesce_in_the_service_time_zone(runtime: Runtime) -> None:
    scheduler = make_scheduler("Europe/Paris", 300)
    register_jobs(scheduler, runtime)
    assert str(scheduler.timezone) == "Europe/Paris"
    for job in scheduler.get_jobs():
        assert job.coalesce is True
        assert job.max_instances == 1
        assert job.misfire_grace_time >= 300
        if isinstance(job.trigger, IntervalTrigger):
            assert str(job.trigger.timezone) == "Europe/Paris"


def test_without_connectors_only_the_leader_check_and_the_breach_scan_run(
    tmp_path: Path,
) -> None:
    (tmp_path / "empty.yaml").write_text("", encoding="utf-8")
    settings = load_settings(
        {"DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}, tmp_path / "empty.yaml"
    )
    runtime = build_runtime(settings)
    try:
        scheduler = BackgroundScheduler(timezone="UTC")
        assert register_jobs(scheduler, runtime) == ["leader", "breach-scan"]
    finally:
        runtime.close()


def test_a_configured_compliance_summary_is_registered_on_its_schedule(tmp_path: Path) -> None:
    data = json.loads(json.dumps(CONFIG))
    data["slack"]["compliance"] = [
        {"channel": "C0LEADS", "schedule": "0 9 1 * *", "timezone": "Europe/Paris"}
    ]
    config = tmp_path / "slabot.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    settings = load_settings(
        {**ENVIRON, "SLABOT_CONFIG": str(config), "DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}
    )
    runtime = build_runtime(settings)
    try:
        scheduler = make_scheduler("Europe/Paris", 300)
        ids = register_jobs(scheduler, runtime)
        assert ids[-1] == "slack-compliance:C0LEADS:0_9_1_*_*"
        job = scheduler.get_job(ids[-1])
        assert isinstance(job.trigger, CronTrigger) and not scheduler.running
        assert str(job.trigger.timezone) == "Europe/Paris"
    finally:
        runtime.close()
