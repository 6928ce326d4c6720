"""Replays through ``slabot run`` over HTTP: captured signed deliveries sent again and again
cost no more fetches, and genuine changes are all read.

One real ``slabot run`` process (SQLite; the jobs in its child process) serves the module,
with the real zenpy and jira clients against the fake Zendesk and Jira, whose calls are
counted: a ticket's fetch by a webhook job is one ``GET /api/v2/tickets/<id>.json`` (Zendesk;
the poller's export carries the tickets, it never asks for one) or one ``GET
/rest/api/2/issue/<id>?expand=changelog`` (Jira). The counts in ``/metrics`` are compared
before and after each test, the service being shared.

The bounds asserted: 200 replays of one signed Zendesk delivery under fresh invocation ids,
sent while its job runs, cause no fetch beyond the delivery's own (1 in all); 50 of a Jira
body under fresh identifiers, likewise (1); a Jira body signed 30 days ago is refused with
401 ``stale`` and nothing stored or fetched; N genuine changes of one ticket (Zendesk) or
issue (Jira) notified in a burst lasting T seconds are all read (the last state is stored)
with at most T / ``MIN_FETCH_INTERVAL`` + 2 fetches, and a change notified while the
ticket's fetch is in flight is read by one more fetch after it (this last one passed before
the change too: it guards the coalescing against losing a change).
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from processes import free_port, start, stop, wait_for, wait_ready

from connectors.intake import MIN_FETCH_INTERVAL
from slabot.demo.environment import ZD_ENVIRONMENT, DemoSystems, start_systems, write_config

REQUESTER, AGENT, ORGANIZATION = 501, 601, 701
CUSTOMER = "customer-1"
INVOCATION = "X-Zendesk-Webhook-Invocation-Id"
IDENTIFIER = "X-Atlassian-Webhook-Identifier"


@dataclass
class Service:
    base: str
    systems: DemoSystems
    database: Path
    log: Path

    def post(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        request = urllib.request.Request(
            f"{self.base}{path}", data=body, headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status), json.loads(response.read())
        except urllib.error.HTTPError as error:
            return int(error.code), json.loads(error.read())

    def webhook_count(self, source: str, result: str) -> int:
        """``slabot_webhooks_total{source, result}`` as ``/metrics`` shows it now."""
        with urllib.request.urlopen(f"{self.base}/metrics", timeout=5) as response:
            text = response.read().decode()
        pattern = rf'^slabot_webhooks_total\{{result="{result}",source="{source}"\}} ([0-9.e+]+)$'
        found = re.search(pattern, text, re.MULTILINE)
        return int(float(found.group(1))) if found else 0

    def rows(self, sql: str, *parameters: object) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.database) as connection:
            return list(connection.execute(sql, parameters))

    def stored_status(self, source: str, key: str) -> str | None:
        found = self.rows(
            "SELECT status FROM tickets WHERE source = ? AND external_key = ?", source, key
        )
        return str(found[0][0]) if found else None

    def zendesk_fetches(self, number: int) -> int:
        return self.systems.zendesk.count("GET", f"/api/v2/tickets/{number}.json")

    def jira_fetches(self, number: int) -> int:
        path = f"/issue/{10_000 + number}"
        with self.systems.jira._lock:
            calls = list(self.systems.jira.calls)
        return sum(
            1
            for call in calls
            if call.method == "GET"
            and call.path.rstrip("/").endswith(path)
            and "changelog" in ",".join(call.query.get("expand", []))
        )


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    folder = tmp_path_factory.mktemp("replay")
    now = datetime.now(UTC)
    systems = start_systems(now)
    systems.zendesk.add_user(REQUESTER, "end-user")
    systems.zendesk.add_user(AGENT, "agent")
    systems.zendesk.add_organization(
        ORGANIZATION, organization_fields={"support_plan": "premier", "country": "us"}
    )
    systems.jira.add_user(CUSTOMER, "Customer", account_type="customer")
    database = folder / "slabot.db"
    environ = systems.environ(f"sqlite:///{database}", write_config(folder / "slabot.yaml"))
    port, log = free_port(), folder / "run.log"
    process = start(environ, port, log, folder)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, process, log)
        yield Service(base, systems, database, log)
    finally:
        stop(process)
        systems.stop()


def open_zendesk_ticket(service: Service, number: int) -> tuple[dict[str, str], bytes]:
    """A premier P1 in production, and the trigger's signed delivery (docs/zendesk.md)."""
    zendesk = service.systems.zendesk
    zendesk.now = datetime.now(UTC)
    zendesk.add_ticket(
        number,
        requester_id=REQUESTER,
        organization_id=ORGANIZATION,
        priority="urgent",
        custom_fields={ZD_ENVIRONMENT: "env_production"},
    )
    return notice(service, number)


def notice(service: Service, number: int) -> tuple[dict[str, str], bytes]:
    """The trigger's delivery for the ticket as it is now (its body names ``updated_at``)."""
    ticket = service.systems.zendesk.tickets[number]
    return service.systems.zendesk.webhook(
        {"ticket_id": str(number), "updated_at": ticket["updated_at"]}
    )


def settle(condition: Any, what: str) -> None:
    """Wait for ``condition``, then for any job a late notice could still start."""
    wait_for(condition, 30, what)
    time.sleep(2 * MIN_FETCH_INTERVAL + 0.5)


def test_200_replays_of_one_signed_zendesk_delivery_cost_no_fetch(service: Service) -> None:
    number = 41
    headers, body = open_zendesk_ticket(service, number)
    duplicates = service.webhook_count("zendesk", "duplicate")
    assert service.post("/webhooks/zendesk", headers, body)[0] == 202
    # The capture replayed at once, while its job runs, each time under a fresh id.
    answers = [
        service.post("/webhooks/zendesk", {**headers, INVOCATION: f"replay-{n}"}, body)
        for n in range(200)
    ]
    assert {(status, answer["status"]) for status, answer in answers} == {(200, "duplicate")}
    settle(lambda: service.stored_status("zendesk", str(number)) is not None, "the ticket")
    assert service.zendesk_fetches(number) == 1
    assert service.webhook_count("zendesk", "duplicate") - duplicates == 200
    # Zendesk's own retry keeps the invocation id: a duplicate too, answered 2xx.
    assert service.post("/webhooks/zendesk", headers, body)[0] == 200
    assert service.zendesk_fetches(number) == 1


def test_a_jira_body_signed_30_days_ago_is_refused_and_nothing_is_stored(
    service: Service,
) -> None:
    number = 51
    old = datetime.now(UTC) - timedelta(days=30)
    headers, body = service.systems.jira.add_issue(number, reporter=CUSTOMER, created_at=old)
    stale = service.webhook_count("jira", "stale")
    deliveries = service.rows("SELECT count(*) FROM webhook_deliveries")
    status, answer = service.post("/webhooks/jira", headers, body)
    assert status == 401
    assert "timestamp" in answer["error"] and "30 days old" in answer["error"], answer
    assert "jira.webhook_max_age_seconds" in answer["error"]
    assert service.rows("SELECT count(*) FROM webhook_deliveries") == deliveries
    # Replayed under fresh identifiers: refused each time, never fetched, never stored.
    for n in range(50):
        assert service.post("/webhooks/jira", {**headers, IDENTIFIER: f"old-{n}"}, body)[0] == 401
    time.sleep(2 * MIN_FETCH_INTERVAL)
    assert service.jira_fetches(number) == 0
    assert service.stored_status("jira", str(10_000 + number)) is None
    assert service.webhook_count("jira", "stale") - stale == 51
    assert "Jira webhook refused: jira:issue_created: the body's timestamp" in (
        service.log.read_text()
    )


def test_50_replays_of_a_fresh_jira_body_under_new_identifiers_are_duplicates(
    service: Service,
) -> None:
    number = 52
    service.systems.jira.now = datetime.now(UTC)
    headers, body = service.systems.jira.add_issue(number, reporter=CUSTOMER, priority="High")
    duplicates = service.webhook_count("jira", "duplicate")
    assert service.post("/webhooks/jira", headers, body)[0] == 202
    answers = [
        service.post("/webhooks/jira", {**headers, IDENTIFIER: f"replay-{n}"}, body)
        for n in range(50)
    ]
    assert {(status, answer["status"]) for status, answer in answers} == {(200, "duplicate")}
    key = str(10_000 + number)
    settle(lambda: service.stored_status("jira", key) is not None, "the issue")
    assert service.jira_fetches(number) == 1
    assert service.webhook_count("jira", "duplicate") - duplicates == 50


def test_genuine_zendesk_changes_notified_in_a_burst_are_all_read_with_few_fetches(
    service: Service,
) -> None:
    number = 42
    zendesk = service.systems.zendesk
    headers, body = open_zendesk_ticket(service, number)
    assert service.post("/webhooks/zendesk", headers, body)[0] == 202
    settle(lambda: service.stored_status("zendesk", str(number)) is not None, "the ticket")
    fetches = service.zendesk_fetches(number)
    statuses = ["open", "pending"] * 15 + ["hold"]
    began = time.monotonic()
    for step, status in enumerate(statuses, start=1):
        zendesk.agent_update(
            number, AGENT, at=datetime.now(UTC) + timedelta(seconds=step), status=status
        )
        assert service.post("/webhooks/zendesk", *notice(service, number))[0] == 202
    burst = time.monotonic() - began
    settle(lambda: service.stored_status("zendesk", str(number)) == "on_hold", "the last change")
    bound = int(burst / MIN_FETCH_INTERVAL) + 2
    assert service.zendesk_fetches(number) - fetches <= bound, (burst, bound)


def test_a_change_notified_while_the_ticket_is_being_fetched_is_read_after_it(
    service: Service,
) -> None:
    number = 43
    zendesk = service.systems.zendesk
    headers, body = open_zendesk_ticket(service, number)
    assert service.post("/webhooks/zendesk", headers, body)[0] == 202
    settle(lambda: service.stored_status("zendesk", str(number)) is not None, "the ticket")
    fetches = service.zendesk_fetches(number)
    zendesk.slow_next(1, 1.5, path_contains=f"/tickets/{number}.json", method="GET")
    zendesk.agent_update(
        number, AGENT, at=datetime.now(UTC) + timedelta(seconds=1), status="pending"
    )
    assert service.post("/webhooks/zendesk", *notice(service, number))[0] == 202
    wait_for(lambda: service.zendesk_fetches(number) > fetches, 10, "the fetch to start")
    # The fetch in flight answers with the state before this change; its notice queues one
    # more fetch, held back until the interval is over, which reads it.
    zendesk.agent_update(number, AGENT, at=datetime.now(UTC) + timedelta(seconds=2), status="hold")
    assert service.post("/webhooks/zendesk", *notice(service, number))[0] == 202
    settle(lambda: service.stored_status("zendesk", str(number)) == "on_hold", "the change")
    assert service.zendesk_fetches(number) - fetches == 2


def test_genuine_jira_changes_notified_in_a_burst_are_all_read_with_few_reads(
    service: Service,
) -> None:
    number = 53
    jira = service.systems.jira
    jira.now = datetime.now(UTC)
    headers, body = jira.add_issue(number, reporter=CUSTOMER, priority="High")
    assert service.post("/webhooks/jira", headers, body)[0] == 202
    key = str(10_000 + number)
    settle(lambda: service.stored_status("jira", key) is not None, "the issue")
    reads = service.jira_fetches(number)
    statuses = ["In Progress", "Waiting for customer"] * 10 + ["Resolved"]
    began = time.monotonic()
    for step, status in enumerate(statuses, start=1):
        at = datetime.now(UTC) + timedelta(seconds=step)
        assert (
            service.post(
                "/webhooks/jira", *jira.person_update(number, CUSTOMER, at=at, status=status)
            )[0]
            == 202
        )
    burst = time.monotonic() - began
    settle(lambda: service.stored_status("jira", key) == "solved", "the last change")
    bound = int(burst / MIN_FETCH_INTERVAL) + 2
    assert service.jira_fetches(number) - reads <= bound, (burst, bound)
