"""End to end: a ticket whose plan its policy does not know is stored, tagged and shown, never
dropped (issue 13, defect 1), through the running service, the real clients and the fakes.

Before, the webhook was answered 202 and the ticket was never stored: the evaluation's
``plan 'enterprise' is not in policy`` failed every ingest (webhook job and poll alike), and
nothing showed it but a line per attempt. Now the ticket is stored and evaluated (zoom and
cloudtalk have no default plan: no targets), the helpdesk gets the ``sla_unknown_plan`` tag
and one internal note naming the plan and the known ones, the log one WARNING (not one per
poll or redelivery), ``/metrics`` the gauge ``slabot_tickets_unknown_plan``, ``/readyz`` a
warning with the count (still 200), and the dashboard a banner and a marker. Each on SQLite
and on PostgreSQL, for Zendesk (the plan from the organization's field) and Jira (from the
plan field, a value not in ``jira.fields.plan.values``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.ticket import Ticket
from slabot.demo.environment import JIRA_ENVIRONMENT, JIRA_PLAN, ZD_ENVIRONMENT, DemoSystems
from tests.e2e.databases import fresh_postgres
from tests.e2e.harness import (
    DASHBOARD_TOKEN,
    Expected,
    RunningService,
    internal_notes,
    jira_shown,
    jira_shows,
    start_service,
    wait_until,
    zendesk_shown,
    zendesk_shows,
)

pytestmark = pytest.mark.slow

MONDAY = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)
REQUESTER, ORGANIZATION = 501, 701
JIRA_CUSTOMER = "5f0c0a5e1b2c3d0070a1c0c0"
ZOOM_PLANS = "premier, premier_assurance, premier_elite, premier_plus, standard"
CLOUDTALK_PLANS = "advanced, basic, professional"


@pytest.fixture(params=["sqlite", "postgresql"])
def service(
    request: pytest.FixtureRequest, systems: DemoSystems, tmp_path: Path
) -> Iterator[RunningService]:
    """The service on SQLite or on a fresh PostgreSQL database, stopped after the test."""
    if request.param == "sqlite":
        running = start_service(systems, tmp_path, f"sqlite:///{tmp_path / 'slabot.db'}", MONDAY)
        try:
            yield running
        finally:
            running.stop()
        return
    with fresh_postgres() as url:
        running = start_service(systems, tmp_path, url, MONDAY)
        try:
            yield running
        finally:
            running.stop()


def unknown_plan_gauge(service: RunningService) -> dict[tuple[str, str], float]:
    return {
        (labels["policy"], labels["plan"]): value
        for (name, label_items), value in service.metrics().items()
        if name == "slabot_tickets_unknown_plan"
        for labels in [dict(label_items)]
    }


def warnings_logged(service: RunningService, ticket: str) -> list[str]:
    """The service's WARNING lines (its JSON log) about ``ticket`` being stored unplaced."""
    found = []
    for line in service.log.getvalue().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        message = str(record.get("event") or record.get("message") or "")
        level = str(record.get("level") or record.get("levelname") or "").upper()
        if level == "WARNING" and f"ticket {ticket} stored:" in message:
            found.append(message)
    return found


def poll_once(service: RunningService, helpdesk: str) -> None:
    """Run the helpdesk's poll job now and wait for it to have run (the backstop re-reads
    the ticket: it must not warn or note it again)."""

    def runs() -> float:
        return service.metrics().get(
            ("slabot_job_runs_total", (("job", f"poll:{helpdesk}"), ("outcome", "ok"))), 0.0
        )

    before = runs()
    service.run_job(f"poll:{helpdesk}")
    wait_until(lambda: runs() > before, f"the {helpdesk} poll to run")
    service.settle()


def check_visible(service: RunningService, ticket: str, policy: str, plan: str, page: str) -> None:
    """``/metrics``, ``/readyz`` and the dashboard show the one open ticket with ``plan``."""
    assert unknown_plan_gauge(service) == {(policy, plan): 1.0}
    ready = service.get("/readyz")
    assert ready.status == 200, ready.text  # a data problem, not an outage
    body = ready.json()
    assert body["status"] == "ready"
    assert body["unknown_plans"] == {policy: {plan: 1}}
    (warning,) = body["warnings"]
    assert warning.startswith(f"1 open ticket names a plan its policy does not know: {plan!r}")
    board = service.get("/", {"Authorization": f"Bearer {DASHBOARD_TOKEN}"})
    assert board.status == 200
    assert 'id="unknown-plans"' in board.text and f"({plan}: 1)" in board.text
    assert "1 open ticket names a plan its policy does not know" in board.text
    assert f"unknown plan {plan}" in board.text
    detail = service.get(page, {"Authorization": f"Bearer {DASHBOARD_TOKEN}"})
    assert detail.status == 200 and 'id="unknown-plan"' in detail.text
    assert f"is not in policy {policy!r}" in detail.text.replace("&#39;", "'")


def test_a_zendesk_ticket_whose_organization_has_an_unknown_plan_is_stored_and_shown(
    service: RunningService, systems: DemoSystems
) -> None:
    zendesk = systems.zendesk
    zendesk.add_user(REQUESTER, "end-user", time_zone="Berlin")
    zendesk.add_organization(ORGANIZATION, organization_fields={"support_plan": "enterprise"})
    zendesk.add_ticket(
        2001,
        requester_id=REQUESTER,
        organization_id=ORGANIZATION,
        priority="high",
        custom_fields={ZD_ENVIRONMENT: "env_production"},
    )
    expected = Expected(
        "zoom",
        Ticket(
            id="2001",
            created_at=MONDAY,
            priority="P2",
            plan="enterprise",
            environment="production",
            channel="web",
            customer_timezone="Europe/Berlin",
            status="new",
        ),
    )
    service.zendesk_webhook(2001)  # asserts the 202
    service.settle()

    decision = expected.at(MONDAY)
    assert decision.unknown_plan == "enterprise" and decision.tags == ("sla_unknown_plan",)
    assert zendesk_shown(systems, 2001) == zendesk_shows(decision)  # the tag, no due dates
    note = (
        f"slabot: plan 'enterprise' is not in policy 'zoom' (known plans: {ZOOM_PLANS}): no "
        "targets (the policy has no default plan); add the plan to the policy, or correct the "
        "ticket's plan. Until then the ticket carries the tag sla_unknown_plan."
    )
    assert internal_notes(systems, 2001) == [note]
    check_visible(service, "zendesk:2001", "zoom", "enterprise", "/tickets/zendesk/2001")

    # A redelivery and a poll read the ticket again: no second note, no second warning.
    service.zendesk_webhook(2001)
    service.settle()
    poll_once(service, "zendesk")
    assert internal_notes(systems, 2001) == [note]
    (logged,) = warnings_logged(service, "zendesk:2001")
    assert "plan 'enterprise' is not in policy 'zoom'" in logged
    assert unknown_plan_gauge(service) == {("zoom", "enterprise"): 1.0}


def test_a_jira_issue_with_an_unknown_plan_is_stored_and_shown(
    service: RunningService, systems: DemoSystems
) -> None:
    jira = systems.jira
    jira.add_user(JIRA_CUSTOMER, "Customer", account_type="customer", time_zone="Europe/Bratislava")
    # "Enterprise" is not among jira.fields.plan.values: it reaches the policy as it is.
    delivery = jira.add_issue(
        2,
        reporter=JIRA_CUSTOMER,
        priority=None,
        fields={JIRA_PLAN: {"value": "Enterprise"}, JIRA_ENVIRONMENT: {"value": "Production"}},
    )
    expected = Expected(
        "cloudtalk",
        Ticket(id="10002", created_at=MONDAY, plan="Enterprise", environment="production"),
    )
    service.jira_webhook(delivery)
    service.settle()

    decision = expected.at(MONDAY)
    assert decision.unknown_plan == "Enterprise" and decision.tags == ("sla_unknown_plan",)
    assert jira_shown(systems, 2) == jira_shows(decision, "Europe/Bratislava")
    comments: list[dict[str, Any]] = [c for c in jira.issue_comments(2) if not c["jsdPublic"]]
    assert len(comments) == 1
    text = json.dumps(comments[0]["body"])
    assert f"plan 'Enterprise' is not in policy 'cloudtalk' (known plans: {CLOUDTALK_PLANS})" in (
        text
    )
    check_visible(service, "jira:10002", "cloudtalk", "Enterprise", "/tickets/jira/10002")

    service.jira_webhook(delivery)
    service.settle()
    poll_once(service, "jira")
    assert len([c for c in jira.issue_comments(2) if not c["jsdPublic"]]) == 1
    assert len(warnings_logged(service, "jira:10002")) == 1
    assert unknown_plan_gauge(service) == {("cloudtalk", "Enterprise"): 1.0}
