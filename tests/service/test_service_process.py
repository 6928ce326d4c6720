"""``slabot run`` as real processes: SIGTERM drains the queued webhooks before exiting; two
replicas on one PostgreSQL database elect one scheduler, and when the leader is killed the
other takes over within two scan intervals with no duplicate write or nudge."""

from __future__ import annotations

import signal
import sqlite3
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from processes import free_port, get, post, start, stop, wait_for, wait_ready

from slabot.demo.environment import ZD_ENVIRONMENT, DemoSystems, write_config

REQUESTER, ORGANIZATION = 501, 701


def premier_customer(systems: DemoSystems) -> None:
    systems.zendesk.add_user(REQUESTER, "end-user")
    systems.zendesk.add_organization(
        ORGANIZATION, organization_fields={"support_plan": "premier", "country": "us"}
    )


def open_ticket(
    systems: DemoSystems, number: int, created: datetime
) -> tuple[dict[str, str], bytes]:
    """A zoom premier P1 in production (first response and next update within 1h, 24x7)."""
    systems.zendesk.now = created
    systems.zendesk.add_ticket(
        number,
        requester_id=REQUESTER,
        organization_id=ORGANIZATION,
        created_at=created,
        priority="urgent",
        custom_fields={ZD_ENVIRONMENT: "env_production"},
    )
    return systems.zendesk.webhook({"ticket_id": str(number)})


def test_sigterm_drains_the_queued_webhooks_then_exits_0(
    systems: DemoSystems, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "slabot.yaml", {"drain_timeout_seconds": 20})
    database = tmp_path / "slabot.db"
    environ = systems.environ(f"sqlite:///{database}", config)
    port, log = free_port(), tmp_path / "run.log"
    process = start(environ, port, log, tmp_path)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, process, log)
        premier_customer(systems)
        now = datetime.now(UTC)
        deliveries = [open_ticket(systems, n, now) for n in (1, 2, 3)]
        # Zendesk is slow and failing at first: each fetch waits, answers 503, is retried.
        for number in (1, 2, 3):
            systems.zendesk.fail_next(
                1, 503, stall=0.5, path_contains=f"/tickets/{number}.json", method="GET"
            )
        for headers, body in deliveries:
            assert post(f"{base}/webhooks/zendesk", headers, body) == 202
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    finally:
        stop(process)
    with sqlite3.connect(database) as connection:
        (count,) = connection.execute("SELECT count(*) FROM tickets").fetchone()
    assert count == 3, log.read_text()
    text = log.read_text()
    assert "shut down cleanly" in text
    for secret in systems.secrets():
        assert secret not in text


@pytest.mark.slow
def test_two_replicas_one_leader_takeover_without_duplicates(
    systems: DemoSystems, tmp_path: Path, pg_url: str
) -> None:
    scan = 2.0
    config = write_config(
        tmp_path / "slabot.yaml",
        {"scan_interval_seconds": scan, "flush_interval_seconds": 0.5, "drain_timeout_seconds": 2},
    )
    ports = {"a": free_port(), "b": free_port()}
    processes = {}
    logs = {name: tmp_path / f"{name}.log" for name in ports}
    try:
        for name, port in ports.items():
            environ = systems.environ(pg_url, config, {"SLABOT_WORKER_ID": f"replica-{name}"})
            processes[name] = start(environ, port, logs[name], tmp_path)
        bases = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        for name in ports:
            wait_ready(bases[name], processes[name], logs[name])

        def leaders() -> list[str]:
            leading = []
            for name, base in bases.items():
                try:
                    if get(f"{base}/readyz")[1]["leader"]:
                        leading.append(name)
                except OSError:
                    pass  # a dead replica
            return leading

        wait_for(lambda: len(leaders()) == 1, 3 * scan, "one leader")
        (leader,) = leaders()
        (follower,) = [name for name in ports if name != leader]

        # Tickets breached long ago, delivered to both replicas in turn.
        premier_customer(systems)
        now = datetime.now(UTC)
        first = list(range(2001, 2007))
        for index, number in enumerate(first):
            headers, body = open_ticket(systems, number, now - timedelta(minutes=70))
            target = bases[leader] if index % 2 else bases[follower]
            assert post(f"{target}/webhooks/zendesk", headers, body) == 202
        slack = systems.slack

        def breach_notices() -> int:
            return len(slack.calls_to("chat.postMessage"))

        # One message per ticket: a breached P1's first response posts it, with a reply
        # announcing the breach; its next update is a reply with a breach reply of its own.
        per_breached, per_nudged = 4, 2

        wait_for(lambda: written(systems, first), 30, "the first write-backs")
        wait_for(lambda: breach_notices() >= per_breached * len(first), 30, "the breach notices")

        # The leader dies without a word.
        processes[leader].kill()
        processes[leader].wait(10)
        took = wait_for(lambda: leaders() == [follower], 10 * scan, "the follower to lead")
        assert took <= 2 * scan, f"took over after {took:.1f}s (scan interval {scan}s)"

        # Jobs continue in the survivor: new tickets at 75% of their hour get their nudges.
        second = list(range(3001, 3005))
        for number in second:
            headers, body = open_ticket(systems, number, datetime.now(UTC) - timedelta(minutes=50))
            assert post(f"{bases[follower]}/webhooks/zendesk", headers, body) == 202
        wait_for(lambda: written(systems, second), 30, "the write-backs after the takeover")
        wanted = per_breached * len(first) + per_nudged * len(second)
        wait_for(lambda: breach_notices() >= wanted, 30, "the nudges")
        time.sleep(3 * scan)  # let any duplicate show up
    finally:
        for process in processes.values():
            stop(process)

    # Every ticket was updated once, every message posted once.
    updates = Counter(
        update["id"]
        for call in systems.zendesk.calls
        if call.method == "PUT" and isinstance(call.body, dict)
        for update in call.body.get("tickets") or [call.body.get("ticket") or {}]
    )
    assert set(updates) == set(first + second)
    assert set(updates.values()) == {1}, updates
    calls = slack.calls_to("chat.postMessage")
    posted = [str(call.args.get("text")) for call in calls]
    assert len(posted) == per_breached * len(first) + per_nudged * len(second)
    assert len(set(posted)) == len(posted), posted
    assert sum(1 for call in calls if not call.args.get("thread_ts")) == len(first + second)
    assert slack.problems == []


def written(systems: DemoSystems, numbers: list[int]) -> bool:
    """Whether slabot has written its due-date fields to each of ``numbers``."""
    for number in numbers:
        fields = systems.zendesk.shown(number)["fields"]
        if not any(str(value).endswith("Z") for value in fields.values() if value):
            return False
    return True
