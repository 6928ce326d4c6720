"""``/readyz`` tells the truth: through ``slabot run``, a Zendesk whose every poll is refused
(401) makes the replica not ready, with the poll's state, last error and failures in the
body, until a poll works again; credentials refused at start (the start-up doctor) do too,
and the service still starts. The states themselves, with a fixed clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from processes import free_port, get, start, stop, wait_ready

from slabot.demo.environment import CONFIG, DemoSystems, write_config
from slabot.service.health import Health


def wait_body(
    url: str, condition: Callable[[int, Any], bool], timeout: float, log: Path
) -> tuple[int, Any]:
    deadline = time.monotonic() + timeout
    status, body = 0, None
    while True:
        try:
            status, body = get(url)
        except OSError:  # not listening yet
            status, body = 0, None
        if status and condition(status, body):
            return status, body
        if time.monotonic() > deadline:
            raise AssertionError(f"/readyz stayed {status} {body}\n{log.read_text()}")
        time.sleep(0.2)


def test_a_zendesk_refusing_every_poll_makes_the_replica_not_ready_until_a_poll_works(
    systems: DemoSystems, tmp_path: Path
) -> None:
    CONFIG["zendesk"]["poll_interval_seconds"] = 10  # the least allowed
    try:
        config = write_config(tmp_path / "slabot.yaml")
    finally:
        CONFIG["zendesk"]["poll_interval_seconds"] = 60
    environ = systems.environ(
        f"sqlite:///{tmp_path / 'slabot.db'}", config, {"SLABOT_WEBHOOK_WORKER": "thread"}
    )
    systems.zendesk.fail_next(1000, 401, path_contains="/incremental/")
    port, log = free_port(), tmp_path / "run.log"
    process = start(environ, port, log, tmp_path)
    url = f"http://127.0.0.1:{port}/readyz"
    try:
        wait_ready(f"http://127.0.0.1:{port}", process, log)
        _status, body = wait_body(url, lambda s, _b: s == 503, 40, log)
        assert body["status"] == "unavailable" and body["database"] == "ok"
        (problem,) = body["problems"]
        assert problem.startswith("zendesk poll: credentials refused")
        poll = body["connectors"]["zendesk"]["poll"]
        assert poll["state"] == "never succeeded" and poll["credentials_refused"] is True
        assert poll["consecutive_failures"] >= 1 and "401" in poll["last_error"]
        assert body["connectors"]["zendesk"]["credentials"]["state"] == "ok"  # users/me works
        systems.zendesk.faults.clear()  # the admin fixed the token
        _status, body = wait_body(url, lambda s, _b: s == 200, 40, log)
        assert body["problems"] == []
        assert body["connectors"]["zendesk"]["poll"]["state"] == "ok"
    finally:
        stop(process)
    text = log.read_text()
    for secret in systems.secrets():
        assert secret not in text


def test_credentials_refused_at_start_are_logged_and_make_the_replica_not_ready(
    systems: DemoSystems, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "slabot.yaml")
    environ = systems.environ(
        f"sqlite:///{tmp_path / 'slabot.db'}",
        config,
        {"SLABOT_WEBHOOK_WORKER": "thread", "SLACK_BOT_TOKEN": "xoxb-revoked-token"},
    )
    port, log = free_port(), tmp_path / "run.log"
    process = start(environ, port, log, tmp_path)
    url = f"http://127.0.0.1:{port}/readyz"
    try:
        _status, body = wait_body(url, lambda s, b: s == 503 and bool(b["problems"]), 40, log)
        (problem,) = body["problems"]
        assert problem.startswith("slack credentials: credentials refused: auth.test answered")
        assert get(f"http://127.0.0.1:{port}/healthz")[0] == 200  # alive: not restarted
    finally:
        stop(process)
    text = log.read_text()
    assert "doctor: FAIL  slack credentials" in text and "fix: check SLACK_BOT_TOKEN" in text
    assert "doctor: OK    zendesk credentials" in text
    assert "xoxb-revoked-token" not in text
    # The revoked Slack token is the point of this test: the fake Slack saw exactly that.
    assert set(systems.slack.problems) == {"auth.test: called without the bot token"}
    systems.slack.problems.clear()


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_an_activity_reads_ok_never_succeeded_or_failing_since_with_its_failures() -> None:
    clock = Clock()
    health = Health(clock, ("zendesk",), grace=timedelta(minutes=15))
    assert health.snapshot() == {"zendesk": {}}
    health.failed("zendesk", "poll", "Zendesk answered 503")
    poll = health.snapshot()["zendesk"]["poll"]
    assert (poll["state"], poll["consecutive_failures"]) == ("never succeeded", 1)
    assert health.problems() == []  # within the grace period: a helpdesk outage at start
    clock.now += timedelta(minutes=15)
    health.failed("zendesk", "poll", "Zendesk answered 503")
    (problem,) = health.problems()
    assert problem.startswith("zendesk poll: never succeeded since the start at 2026-11-16T09")
    health.succeeded("zendesk", "poll")
    assert health.snapshot()["zendesk"]["poll"]["state"] == "ok" and health.problems() == []
    clock.now += timedelta(minutes=1)
    health.failed("zendesk", "poll", "timed out")
    clock.now += timedelta(minutes=1)
    health.failed("zendesk", "poll", "timed out")
    poll = health.snapshot()["zendesk"]["poll"]
    assert poll["state"] == "failing since 2026-11-16T09:16:00Z"
    assert (poll["consecutive_failures"], poll["failures"], poll["runs"]) == (2, 4, 5)
    assert health.problems() == []  # it worked once: the metrics' alerts take it from here


def test_a_refusal_is_cleared_only_by_the_same_activity_working_again() -> None:
    clock = Clock()
    health = Health(clock, ("zendesk",), grace=timedelta(0))
    health.failed("zendesk", "poll", "Zendesk refused (403)", credentials_refused=True)
    health.succeeded("zendesk", "flush")  # nothing to send proves nothing about the export
    health.succeeded("zendesk", "credentials")
    (problem,) = health.problems()
    assert problem == (
        "zendesk poll: credentials refused: Zendesk refused (403) (run `slabot doctor`)"
    )
    health.succeeded("zendesk", "poll")
    assert health.problems() == []


def test_a_ticket_no_poll_can_apply_is_shown_but_never_makes_the_replica_unready() -> None:
    clock = Clock()
    health = Health(clock, ("zendesk",), grace=timedelta(minutes=15))
    health.succeeded("zendesk", "poll")
    health.failed("zendesk", "ingest", "1 not applied in the last poll; last: ticket 7: ...")
    clock.now += timedelta(hours=2)
    health.failed("zendesk", "ingest", "1 not applied in the last poll; last: ticket 7: ...")
    ingest = health.snapshot()["zendesk"]["ingest"]
    assert (ingest["state"], ingest["failures"]) == ("never succeeded", 2)
    assert health.problems() == []  # that ticket's data, not this replica, is the problem
