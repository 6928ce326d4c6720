"""What each connector's mapping gives routing rules (``Snapshot.routing``): Zendesk's brand
and form ids, group and organization names, tags, ticket and organization fields; Jira's
project, issue type, components, labels and custom fields as plain values. The shipped
rules then route them."""

from __future__ import annotations

from pathlib import Path

from connectors.jira.config import JiraConfig
from connectors.jira.mapping import IssueBundle, map_issue
from connectors.zendesk.config import ZendeskConfig
from connectors.zendesk.mapping import TicketBundle, map_ticket
from slabot.routing_files import load_routing

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "slabot.yaml"


def test_a_zendesk_ticket_gives_its_brand_form_group_organization_tags_and_fields() -> None:
    bundle = TicketBundle(
        {
            "id": 7,
            "created_at": "2026-11-16T17:00:00Z",
            "status": "open",
            "brand_id": 360000000002,
            "ticket_form_id": 90,
            "tags": ["vip", "plan_premier"],
            "custom_fields": [
                {"id": 360001000001, "value": "env_production"},
                {"id": 5, "value": None},
            ],
        },
        organization={
            "name": "Initech",
            "organization_fields": {"support_plan": "premier", "x": None},
        },
        group={"name": "Tier 2"},
    )
    routing = map_ticket(bundle, ZendeskConfig(policy="zoom")).snapshot.routing
    assert routing == {
        "brand": "360000000002",
        "form": "90",
        "group": "Tier 2",
        "organization": "Initech",
        "tags": ["plan_premier", "vip"],
        "custom_fields": {"360001000001": "env_production"},
        "organization_fields": {"support_plan": "premier"},
    }
    route = load_routing(SHIPPED).router.route({**routing, "source": "zendesk"})
    assert (route.policy, route.rule) == ("zmanda", "zmanda-customers")
    bare = TicketBundle({"id": 8, "created_at": "2026-11-16T17:00:00Z", "status": "new"})
    assert map_ticket(bare, ZendeskConfig(policy="zoom")).snapshot.routing == {}


def test_a_jira_issue_gives_its_project_type_components_labels_and_plain_fields() -> None:
    bundle = IssueBundle(
        {
            "id": "10001",
            "key": "CT-1",
            "fields": {
                "created": "2026-11-16T17:00:00.000+0000",
                "status": {"name": "Open", "statusCategory": {"key": "new"}},
                "project": {"key": "CT"},
                "issuetype": {"name": "Incident"},
                "components": [{"name": "Dialer"}, {"name": "CRM"}],
                "labels": ["vip"],
                "customfield_10050": {"value": "Advanced", "id": "1"},
                "customfield_10060": [{"value": "A"}, {"value": "B"}],
                "customfield_10070": 3,
                "customfield_10080": {"accountId": "abc"},  # a user: not a routing value
                "customfield_10090": None,
                "summary": "not a custom field",
            },
        }
    )
    routing = map_issue(bundle, JiraConfig(policy="zoom", projects=["CT"])).snapshot.routing
    assert routing == {
        "project": "CT",
        "issue_type": "Incident",
        "components": ["CRM", "Dialer"],
        "labels": ["vip"],
        "fields": {
            "customfield_10050": "Advanced",
            "customfield_10060": ["A", "B"],
            "customfield_10070": 3,
        },
    }
    route = load_routing(SHIPPED).router.route({**routing, "source": "jira"})
    assert (route.policy, route.rule) == ("cloudtalk", "cloudtalk-on-jira")
