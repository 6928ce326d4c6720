"""What the connectors put in ``Snapshot.shown`` is what the Slack app reads.

The Zendesk and Jira mappings fill ``assignee_email``, ``queue``, ``key`` and ``url``; these
tests ingest what the real mappings produce and check that a nudge goes by direct message
to the assignee (``users.lookupByEmail``) and that ``/sla OPS-42`` finds the issue slabot
stores by its numeric id.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, timedelta

from connectors.jira.config import JiraConfig
from connectors.jira.mapping import IssueBundle, map_issue
from connectors.zendesk.config import ZendeskConfig
from connectors.zendesk.mapping import TicketBundle, map_ticket
from slabot.fakes.slack import FakeSlack
from tests.slack.slack_support import ASSIGNEE_EMAIL, LEAD, MONDAY_0900_LA, Harness, texts

FIRST_RESPONSE_ONLY = {"thresholds": {"restoration": [], "next_update": []}}


def iso(offset: timedelta = timedelta()) -> str:
    return (MONDAY_0900_LA + offset).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_nudge_for_a_zendesk_ticket_goes_to_its_assignee_by_direct_message(
    make_harness: Callable[..., Harness], fake: FakeSlack
) -> None:
    ticket = {
        "id": 1001,
        "created_at": iso(),
        "updated_at": iso(),
        "status": "open",
        "priority": "high",
        "requester_id": 501,
        "assignee_id": 235323,
        "group_id": 98738,
    }
    mapped = map_ticket(
        TicketBundle(
            ticket,
            assignee={"id": 235323, "role": "agent", "email": ASSIGNEE_EMAIL.upper()},
            group={"id": 98738, "name": "Tier 2"},
            agent_url="https://acme.zendesk.com/agent/tickets/1001",
        ),
        ZendeskConfig(policy="zoom"),
    )
    shown = mapped.snapshot.shown
    assert (shown["assignee_email"], shown["queue"], shown["key"]) == (
        ASSIGNEE_EMAIL,
        "Tier 2",
        "ZD-1001",
    )
    harness = make_harness(nudges=FIRST_RESPONSE_ONLY)
    harness.ingest(shown=shown)  # the harness's zoom premier P2 ticket, as Zendesk shows it
    harness.clock.now = MONDAY_0900_LA + timedelta(hours=3)  # 75% of 4 business hours
    harness.run_nudges()
    harness.flush()
    (message,) = [call.args for call in fake.calls_to("chat.postMessage")]
    assert message["channel"] == "D0ANA"  # the assignee's direct messages
    assert fake.calls_to("users.lookupByEmail")[0].args["email"] == ASSIGNEE_EMAIL
    assert "ZD-1001" in texts(message["blocks"])


def test_sla_with_a_jira_key_finds_the_issue_the_mapping_stored(
    harness: Harness, fake: FakeSlack
) -> None:
    issue = {
        "id": "10001",
        "key": "OPS-42",
        "fields": {
            "created": iso(),
            "updated": iso(),
            "status": {"name": "Open", "statusCategory": {"key": "new"}},
            "priority": {"name": "High"},
            "labels": [],
            "project": {"key": "OPS", "name": "Operations"},
            "assignee": {"accountId": "5b10", "displayName": "Ana", "emailAddress": "ana@x.io"},
        },
    }
    mapped = map_issue(
        IssueBundle(issue, site_url="https://acme.atlassian.net"),
        JiraConfig(policy="zoom", projects=["OPS"]),
    )
    shown = mapped.snapshot.shown
    assert shown["key"] == "OPS-42" and shown["queue"] == "OPS"
    assert shown["url"] == "https://acme.atlassian.net/browse/OPS-42"
    harness.ingest(source="jira", external_key=mapped.snapshot.external_key, shown=shown)
    harness.command("OPS-42", user=LEAD)
    (answer,) = fake.wait_responses()
    assert "OPS-42 · P2" in texts(answer["blocks"])
    assert "https://acme.atlassian.net/browse/OPS-42" in str(answer["blocks"])
