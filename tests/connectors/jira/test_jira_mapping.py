"""Mapping Jira's JSON (fixtures in Atlassian's documented shapes) to slabot's vocabulary."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from jira_support import CONFIG, fixture, fixture_bytes

from connectors.jira.config import JiraConfig, JiraConfigError, parse_jira_config
from connectors.jira.mapping import (
    IssueBundle,
    PayloadError,
    datetime_field_value,
    duedate_value,
    is_public,
    map_issue,
    parse_webhook,
)

ANA, BOB = "5b10ac8d82e05b22cc7d4ef5", "5b10a2844c20165700ede21g"
BOT = "5f0c0a5e1b2c3d0070a1b0b0"
ISSUE = "issue_show__premier_production_paused.json"


def bundle(**changes: Any) -> IssueBundle:
    issue = fixture(ISSUE)
    values: dict[str, Any] = {
        "issue": issue,
        "histories": issue["changelog"]["histories"],
        "comments": issue["fields"]["comment"]["comments"],
        "bot_account_id": BOT,
        "status_categories": {"waiting for support": "indeterminate"},
    }
    values.update(changes)
    return IssueBundle(**values)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def test_the_summary_reporter_organizations_project_and_assignee_name_are_in_shown(
    config: JiraConfig,
) -> None:
    shown = map_issue(bundle(), config).snapshot.shown
    assert shown["subject"] == "Calls drop after 30 seconds"  # fields.summary
    assert shown["requester"] == "Carl Customer"  # fields.reporter.displayName
    assert shown["organization"] == "Initech GmbH"  # the JSM Organizations field
    assert shown["queue"] == "SUP"  # the project: the group
    assert shown["assignee_name"] == "Ana Agent"  # fields.assignee.displayName
    # Two organizations, nobody assigned, no Organizations field configured.
    issue = fixture(ISSUE)
    issue["fields"]["customfield_10002"].append({"id": "2", "name": "Globex"})
    issue["fields"]["assignee"] = None
    shown = map_issue(bundle(issue=issue), config).snapshot.shown
    assert (shown["organization"], shown["assignee_name"]) == ("Initech GmbH, Globex", None)
    unset = config.model_copy(update={"organizations_field": None})
    assert map_issue(bundle(issue=issue), unset).snapshot.shown["organization"] is None


def test_the_organizations_field_must_be_a_custom_field_id() -> None:
    with pytest.raises(JiraConfigError, match=r"jira\.organizations_field"):
        parse_jira_config({"jira": {**CONFIG["jira"], "organizations_field": "Organizations"}})


def test_an_issue_maps_to_a_snapshot_in_the_engines_vocabulary(config: JiraConfig) -> None:
    snapshot = map_issue(bundle(), config).snapshot
    assert (snapshot.source, snapshot.external_key, snapshot.policy) == ("jira", "10042", "zoom")
    assert snapshot.status == "pending"  # "Waiting for customer"
    assert snapshot.plan == "premier"  # the select list's option, renamed
    assert snapshot.environment == "production"
    assert snapshot.product_stage == "ga"  # label stage_ga
    assert snapshot.customer_timezone == "America/New_York"  # the field is empty: reporter's
    assert snapshot.customer_country == "DE"
    assert snapshot.created_at == at("2026-11-16T17:00:00Z")
    assert snapshot.updated_at == at("2026-11-16T18:50:00Z")
    assert snapshot.shown == {
        "priority": "P2",
        "tags": ["stage_ga", "vip"],
        "key": "SUP-42",
        "assignee_email": None,  # Ana's profile hides her e-mail address (Jira's default)
        "queue": "SUP",
        "url": None,  # no site known to the bundle
        "subject": "Calls drop after 30 seconds",
        "requester": "Carl Customer",
        "organization": "Initech GmbH",
        "assignee_name": "Ana Agent",
    }


def test_what_slack_and_the_dashboard_read_is_in_shown(config: JiraConfig) -> None:
    issue = bundle().issue
    fields = dict(issue["fields"])
    fields["assignee"] = {**fields["assignee"], "emailAddress": "Ana@Acme.example"}
    visible = IssueBundle({**issue, "fields": fields}, site_url="https://acme.atlassian.net/")
    shown = map_issue(visible, config).snapshot.shown
    assert shown["assignee_email"] == "ana@acme.example"
    assert shown["key"] == "SUP-42" and shown["queue"] == "SUP"
    assert shown["url"] == "https://acme.atlassian.net/browse/SUP-42"
    # Unassigned, and a project Jira leaves out of the fields: the key's prefix.
    fields = {k: v for k, v in issue["fields"].items() if k != "project"}
    fields["assignee"] = None
    shown = map_issue(IssueBundle({**issue, "fields": fields}), config).snapshot.shown
    assert shown["assignee_email"] is None and shown["queue"] == "SUP"


def test_the_requested_priority_is_as_created_and_an_agents_change_is_a_reclassification(
    config: JiraConfig,
) -> None:
    mapped = map_issue(bundle(), config)
    assert mapped.snapshot.priority == "P3"  # created Medium; Ana set High afterwards
    [change] = mapped.reclassifications
    assert (change.change_id, change.priority, change.jira_priority) == ("10211", "P2", "High")
    assert change.actor == f"Ana Agent (jira {ANA})"
    assert change.at == at("2026-11-16T17:50:00Z")


def test_a_customers_or_slabots_priority_change_is_not_a_reclassification(
    config: JiraConfig,
) -> None:
    issue = fixture(ISSUE)
    histories = issue["changelog"]["histories"]
    customer = issue["fields"]["reporter"]
    histories[1]["author"] = customer  # the reporter raised it: that is their request
    mapped = map_issue(bundle(histories=histories), config)
    assert mapped.reclassifications == ()
    assert mapped.snapshot.priority == "P2"
    histories[1]["author"] = {"accountId": BOT, "displayName": "slabot"}
    mapped = map_issue(bundle(histories=histories), config)
    assert (mapped.reclassifications, mapped.snapshot.priority) == ((), "P3")


def test_replies_are_public_agent_comments_only(config: JiraConfig) -> None:
    snapshot = map_issue(bundle(), config).snapshot
    # Carl's comment is the reporter's, Ana's 17:30 note is JSM-internal, her 18:00 one is
    # restricted to a role: the first reply is 17:45, the last Bob's at 18:30.
    assert snapshot.first_response_at == at("2026-11-16T17:45:00Z")
    assert snapshot.last_agent_update_at == at("2026-11-16T18:30:00Z")


def test_customer_replies_are_public_comments_by_people_who_are_not_agents(
    config: JiraConfig,
) -> None:
    snapshot = map_issue(bundle(), config).snapshot
    assert snapshot.customer_replies == (at("2026-11-16T17:00:00Z"),)  # Carl, the reporter
    assert snapshot.agent_replies == (at("2026-11-16T17:45:00Z"), at("2026-11-16T18:30:00Z"))
    comments = fixture(ISSUE)["fields"]["comment"]["comments"]
    by_app = {**comments[0], "author": {**comments[0]["author"], "accountType": "app"}}
    by_bot = {**comments[0], "author": {**comments[0]["author"], "accountId": BOT}}
    for comment in (by_app, by_bot):
        snapshot = map_issue(bundle(comments=[comment, *comments[1:]]), config).snapshot
        assert snapshot.customer_replies == ()


def test_configured_agents_are_the_only_repliers(config: JiraConfig) -> None:
    snapshot = map_issue(bundle(agent_ids=frozenset({BOB})), config).snapshot
    assert snapshot.first_response_at == at("2026-11-16T18:30:00Z")
    assert map_issue(bundle(agent_ids=frozenset({BOB})), config).reclassifications == ()


def test_statuses_come_from_the_changelog_with_the_one_it_was_created_in(
    config: JiraConfig,
) -> None:
    mapped = map_issue(bundle(), config)
    assert [(c.to, c.at) for c in mapped.status_changes] == [
        ("open", at("2026-11-16T17:00:00Z")),  # Waiting for support
        ("open", at("2026-11-16T17:40:00Z")),  # In Progress
        ("pending", at("2026-11-16T18:35:00Z")),  # Waiting for customer
    ]
    assert mapped.status_changes[2].event_key == "jira:changelog:10212:status"


def test_a_done_issue_is_solved_when_the_changelog_says(config: JiraConfig) -> None:
    issue = fixture(ISSUE)
    histories = issue["changelog"]["histories"]
    histories.append(
        {
            "id": "10230",
            "author": histories[0]["author"],
            "created": "2026-11-16T19:00:00.000+0000",
            "items": [
                {"field": "status", "fromString": "Waiting for customer", "toString": "Done"}
            ],
        }
    )
    issue["fields"]["status"] = {"name": "Done", "statusCategory": {"key": "done"}}
    snapshot = map_issue(bundle(issue=issue, histories=histories), config).snapshot
    assert (snapshot.status, snapshot.solved_at) == ("solved", at("2026-11-16T19:00:00Z"))


def test_unknown_values_are_dropped_with_a_warning(config: JiraConfig) -> None:
    issue = fixture(ISSUE)
    issue["fields"]["customfield_10052"] = "Mars/Olympus"
    issue["fields"]["customfield_10053"] = "Germany"
    issue["fields"]["priority"] = {"name": "Blocker"}
    mapped = map_issue(bundle(issue=issue), config)
    assert mapped.snapshot.customer_timezone is None and mapped.snapshot.customer_country is None
    assert mapped.snapshot.shown["priority"] is None
    assert len(mapped.warnings) == 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda i: i["fields"].pop("created"), "created is missing"),
        (lambda i: i["fields"].update(created="yesterday"), "not an ISO 8601 instant"),
        (lambda i: i.update(id="SUP-42"), "not an issue id"),
        (lambda i: i["fields"].update(labels="vip"), "labels must be a list"),
        (lambda i: i["fields"].update(status={"name": "Triage"}), "has no category"),
    ],
)
def test_payload_drift_fails_loudly(config: JiraConfig, change: Any, message: str) -> None:
    issue = fixture(ISSUE)
    change(issue)
    with pytest.raises(PayloadError, match=message):
        map_issue(bundle(issue=issue), config)


def test_comment_visibility() -> None:
    assert is_public({"jsdPublic": True})
    assert is_public({})  # a Jira Software project: every comment is seen
    assert not is_public({"jsdPublic": False})
    assert not is_public({"visibility": {"type": "group", "value": "staff"}})
    internal = {"key": "sd.public.comment", "value": {"internal": True}}
    assert not is_public({"properties": [internal]})


def test_due_values_take_the_zone_and_jiras_date_time_format() -> None:
    due = datetime(2026, 11, 24, 7, 30, tzinfo=UTC)
    assert duedate_value(due, ZoneInfo("America/Los_Angeles")) == "2026-11-23"
    assert duedate_value(due, ZoneInfo("Europe/Berlin")) == "2026-11-24"
    assert datetime_field_value(due) == "2026-11-24T07:30:00.000+0000"


def test_webhooks_name_the_event_the_issue_and_who() -> None:
    created = parse_webhook(fixture_bytes("jira_issue_created__portal.json"))
    assert (created.event, created.issue_id, created.issue_key) == (
        "jira:issue_created",
        "10042",
        "SUP-42",
    )
    assert created.timestamp == at("2026-11-16T17:00:00Z")
    updated = parse_webhook(fixture_bytes("jira_issue_updated__priority.json"))
    assert updated.changed("priority") and updated.changelog_id == "10211"
    assert updated.account_id == ANA
    comment = parse_webhook(fixture_bytes("comment_created__public.json"))
    assert (comment.event, comment.account_id) == ("comment_created", BOB)  # the author


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"issue": {"id": "1"}}', "no 'webhookEvent'"),
        (b'{"webhookEvent": "jira:issue_updated"}', "has no 'issue'"),
        (fixture_bytes("jira_issue_updated__no_issue_id.json"), "not an issue id"),
        (
            b'{"webhookEvent": "jira:issue_updated", "issue": {"id": "1"}, "changelog": 5}',
            "'changelog' must be an object",
        ),
    ],
)
def test_a_malformed_webhook_says_what_is_wrong(body: bytes, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        parse_webhook(body)


def test_config_errors_name_the_key() -> None:
    with pytest.raises(JiraConfigError, match=r"jira\.prioritys: Extra inputs"):
        parse_jira_config({"jira": {**CONFIG["jira"], "prioritys": {}}})
    with pytest.raises(JiraConfigError, match="say what to watch"):
        parse_jira_config({"jira": {"policy": "zoom"}})
    with pytest.raises(JiraConfigError, match="each Jira priority"):
        parse_jira_config({"jira": {**CONFIG["jira"], "priorities": {"P1": "High", "P2": "high"}}})
    with pytest.raises(JiraConfigError, match="customfield_10050"):
        parse_jira_config(
            {"jira": {**CONFIG["jira"], "fields": {"plan": {"from": "field", "id": "Plan"}}}}
        )
    with pytest.raises(JiraConfigError, match="ORDER BY"):
        parse_jira_config({"jira": {"policy": "zoom", "jql": "project = SUP ORDER BY key"}})


def test_the_watched_jql_and_status_defaults() -> None:
    config = parse_jira_config(
        {"jira": {"policy": "zoom", "projects": ["SUP", "OPS"], "jql": "type = Incident"}}
    )
    assert config.watched_jql() == "project in (SUP, OPS) AND (type = Incident)"
    assert config.status("Waiting for Customer", "indeterminate") == "pending"
    assert config.status("In Review", "indeterminate") == "open"
    assert config.status("Won't Do", "done") == "solved"
    assert config.slabot_priority("highest") == "P1" and config.jira_priority("P4") == "Low"


def test_the_shipped_config_file_is_valid() -> None:
    from connectors.jira.config import load_jira_config

    config = load_jira_config("config/slabot.yaml")
    assert config.policy and config.watched_jql()
