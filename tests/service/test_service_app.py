"""The HTTP app through Starlette's test client: webhooks in (real clients against the fakes),
Slack's signed requests, health, readiness, metrics, the no-op endpoint, and the drain on
shutdown."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from conftest import START, Clock
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from connectors.zendesk.sync import ZendeskSync
from slabot.demo.environment import SLACK_SIGNING_SECRET, ZD_ENVIRONMENT, DemoSystems
from slabot.service import jobs
from slabot.service.app import create_app
from slabot.service.runtime import Runtime, build_runtime
from slabot.service.settings import load_settings
from slabot.store.migrate import upgrade
from slabot.store.models import StoredTicket


def make_runtime(
    systems: DemoSystems, config: Path, url: str, migrate: bool = True, **extra: str
) -> Runtime:
    settings = load_settings(systems.environ(url, config, extra))
    runtime = build_runtime(
        settings,
        Clock(START),
        client_options={"zendesk": {"timeout": 3.0}, "zendesk_intake": {"retry_delay": 0.0}},
    )
    if migrate:
        upgrade(runtime.engine)
    return runtime


@pytest.fixture
def runtime(systems: DemoSystems, config_file: Path, sqlite_url: str) -> Iterator[Runtime]:
    built = make_runtime(systems, config_file, sqlite_url, SLABOT_NOOP_ENDPOINT="true")
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def http(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime)) as client:
        yield client


def stored(runtime: Runtime) -> int:
    with Session(runtime.engine) as session:
        return int(session.scalar(select(func.count()).select_from(StoredTicket)) or 0)


def slack_request(text: str, respond_to: str) -> tuple[dict[str, str], bytes]:
    body = urlencode(
        {
            "team_id": "T0FAKE",
            "user_id": "U0AGENT",
            "command": "/sla",
            "text": text,
            "response_url": respond_to,
            "trigger_id": "1.2.3",
        }
    )
    stamp = str(int(time.time()))
    signature = SignatureVerifier(SLACK_SIGNING_SECRET).generate_signature(
        timestamp=stamp, body=body
    )
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Signature": signature,
        "X-Slack-Request-Timestamp": stamp,
    }, body.encode()


def test_health_readiness_and_metrics_answer(http: TestClient, runtime: Runtime) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    ready = http.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready" and body["database"] == "ok" and body["leader"] is True
    assert set(body["connectors"]) == {"zendesk", "jira", "slack"}
    metrics = http.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    for name in (
        'slabot_outbox_pending{target="zendesk"}',
        'slabot_outbox_oldest_age_seconds{target="slack"}',
        'slabot_webhook_queue_depth{source="jira"}',
        "slabot_scheduler_leader 1.0",
        "slabot_database_up 1.0",
    ):
        assert name in metrics.text


def test_a_signed_zendesk_webhook_is_acknowledged_then_applied(
    http: TestClient, runtime: Runtime, systems: DemoSystems
) -> None:
    systems.zendesk.add_user(501, "end-user")
    systems.zendesk.add_ticket(
        1001, requester_id=501, priority="urgent", custom_fields={ZD_ENVIRONMENT: "env_production"}
    )
    headers, body = systems.zendesk.webhook({"ticket_id": "1001"}, invocation_id="inv-1")
    first = http.post("/webhooks/zendesk", content=body, headers=headers)
    again = http.post("/webhooks/zendesk", content=body, headers=headers)
    assert (first.status_code, first.json()["status"]) == (202, "accepted")
    assert (again.status_code, again.json()["status"]) == (200, "duplicate")
    assert runtime.helpdesks["zendesk"].webhook.intake.drain(10)
    assert stored(runtime) == 1
    text = http.get("/metrics").text
    assert 'slabot_webhooks_total{result="accepted",source="zendesk"} 1.0' in text
    assert 'slabot_webhooks_total{result="duplicate",source="zendesk"} 1.0' in text


def test_a_signed_jira_webhook_is_acknowledged_then_applied(
    http: TestClient, runtime: Runtime, systems: DemoSystems
) -> None:
    systems.jira.add_user("customer-1", "Customer", account_type="customer")
    headers, body = systems.jira.add_issue(1, reporter="customer-1", priority="High")
    response = http.post("/webhooks/jira", content=body, headers=headers)
    assert response.status_code == 202
    assert runtime.helpdesks["jira"].webhook.intake.drain(10)
    assert stored(runtime) == 1


def test_slack_requests_reach_the_bolt_app_and_are_counted(
    http: TestClient, systems: DemoSystems, runtime: Runtime
) -> None:
    headers, body = slack_request("help", systems.slack.response_url())
    response = http.post("/slack/events", content=body, headers=headers)
    assert response.status_code == 200
    tampered = http.post("/slack/events", content=body + b"x", headers=headers)
    assert tampered.status_code == 401
    assert runtime.slack_counts == {"accepted": 1, "unauthorized": 1}


@pytest.mark.parametrize("path", ["/webhooks/zendesk", "/webhooks/jira", "/slack/events"])
def test_an_unsigned_request_is_refused_and_stores_nothing(
    http: TestClient, runtime: Runtime, path: str
) -> None:
    response = http.post(path, content=json.dumps({"ticket_id": "1"}).encode())
    assert response.status_code == 401
    assert stored(runtime) == 0


def test_the_noop_endpoint_answers_only_when_enabled(
    http: TestClient, systems: DemoSystems, config_file: Path, tmp_path: Path
) -> None:
    assert http.post("/noop", content=b"{}").status_code == 202
    plain = make_runtime(systems, config_file, f"sqlite:///{tmp_path / 'plain.db'}")
    try:
        with TestClient(create_app(plain)) as client:
            assert client.post("/noop", content=b"{}").status_code in (404, 405)
    finally:
        plain.close()


def test_a_helpdesk_that_is_not_configured_answers_404_saying_so(
    config_file: Path, tmp_path: Path
) -> None:
    settings = load_settings(
        {"SLABOT_CONFIG": str(config_file), "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    )
    runtime = build_runtime(settings)
    try:
        with TestClient(create_app(runtime)) as client:
            for path, name in (
                ("/webhooks/zendesk", "Zendesk"),
                ("/webhooks/jira", "Jira"),
                ("/slack/events", "Slack"),
            ):
                response = client.post(path, content=b"{}")
                assert response.status_code == 404
                assert f"{name} is not configured" in response.json()["error"]
    finally:
        runtime.close()


def test_readiness_fails_while_the_database_does_not_answer(
    systems: DemoSystems, config_file: Path, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'missing' / 'dir' / 'x.db'}"
    runtime = make_runtime(systems, config_file, url, migrate=False)
    try:
        with TestClient(create_app(runtime)) as client:
            response = client.get("/readyz")
            assert response.status_code == 503
            assert response.json()["status"] == "unavailable"
            assert client.get("/healthz").status_code == 200
            assert "slabot_database_up 0.0" in client.get("/metrics").text
    finally:
        runtime.close()


def test_shutdown_drains_the_queued_webhooks_before_it_returns(
    runtime: Runtime, systems: DemoSystems, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = ZendeskSync.sync_ticket

    def slow(self: ZendeskSync, ticket_id: int, ticket: object = None) -> object:
        time.sleep(0.3)  # a slow helpdesk: the deliveries are still queued at shutdown
        return original(self, ticket_id, ticket)  # type: ignore[arg-type]

    monkeypatch.setattr(ZendeskSync, "sync_ticket", slow)
    systems.zendesk.add_user(501, "end-user")
    for number in (1, 2, 3):
        systems.zendesk.add_ticket(number, requester_id=501)
    with TestClient(create_app(runtime)) as client:
        for number in (1, 2, 3):
            headers, body = systems.zendesk.webhook({"ticket_id": str(number)})
            response = client.post("/webhooks/zendesk", content=body, headers=headers)
            assert response.status_code == 202
        assert stored(runtime) < 3
    assert stored(runtime) == 3


def test_a_ticket_a_poll_cannot_apply_shows_on_readyz_and_the_others_are_applied(
    http: TestClient, runtime: Runtime, systems: DemoSystems
) -> None:
    zendesk = systems.zendesk
    zendesk.add_user(501, "end-user")
    for ticket_id in (1003, 1004):
        zendesk.add_ticket(
            ticket_id, requester_id=501, custom_fields={ZD_ENVIRONMENT: "env_production"}
        )
    # Payload drift on one ticket: its creating audit names a status Zendesk does not have.
    [created] = [e for e in zendesk.audits[1003][0]["events"] if e.get("field_name") == "status"]
    created["value"] = "escalated"

    report = jobs.poll(runtime.helpdesks["zendesk"], runtime.health)
    assert report.error is None and len(report.errors) == 1
    assert stored(runtime) == 1  # the other ticket is in
    ready = http.get("/readyz")
    assert ready.status_code == 200  # one bad ticket does not make the service unready
    zendesk_health = ready.json()["connectors"]["zendesk"]
    assert zendesk_health["poll"]["last_error"] is None
    ingest = zendesk_health["ingest"]
    assert ingest["failures"] == 1 and ingest["last_error_at"] is not None
    assert "ticket 1003: " in ingest["last_error"] and "'escalated'" in ingest["last_error"]
