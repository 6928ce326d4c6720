"""Mapping Zendesk's JSON (fixtures in Zendesk's documented shapes) to slabot's vocabulary."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from conftest import CONFIG, fixture, fixture_bytes

from connectors.zendesk.config import ZendeskConfig, ZendeskConfigError, parse_zendesk_config
from connectors.zendesk.mapping import (
    PayloadError,
    TicketBundle,
    due_field_values,
    map_ticket,
    parse_webhook,
)
from connectors.zendesk.timezones import RAILS_TIME_ZONES, to_iana

AGENT, REQUESTER, BOT = 235323, 20978392, 900


def bundle(**changes: object) -> TicketBundle:
    values: dict[str, object] = {
        "ticket": fixture("ticket_show__premier_production.json")["ticket"],
        "audits": fixture("ticket_audits__reply_hold_reopen.json")["audits"],
        "requester": fixture("user_show__requester_eastern.json")["user"],
        "organization": fixture("organization_show__premier_germany.json")["organization"],
        "agent_ids": frozenset({AGENT, BOT}),
        "bot_user_id": BOT,
    }
    values.update(changes)
    return TicketBundle(**values)  # type: ignore[arg-type]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def test_what_slack_and_the_dashboard_read_is_in_shown(config: ZendeskConfig) -> None:
    users = fixture("users_show_many__requester_and_assignee.json")["users"]
    group = fixture("groups__list.json")["groups"][0]
    mapped = map_ticket(
        bundle(
            assignee=users[1],
            group=group,
            agent_url="https://acme.zendesk.com/agent/tickets/35436",
        ),
        config,
    )
    shown = mapped.snapshot.shown
    assert shown["assignee_email"] == "ana.agent@acme.example"  # as Slack looks it up
    assert shown["queue"] == "Tier 2"
    assert shown["key"] == "ZD-35436"
    assert shown["url"] == "https://acme.zendesk.com/agent/tickets/35436"
    # Unassigned, no group, no link known: None each, the key all the same.
    shown = map_ticket(bundle(), config).snapshot.shown
    assert (shown["assignee_email"], shown["queue"], shown["url"]) == (None, None, None)
    assert shown["key"] == "ZD-35436"


def test_the_subject_requester_organization_group_and_assignee_name_are_in_shown(
    config: ZendeskConfig,
) -> None:
    users = fixture("users_show_many__requester_and_assignee.json")["users"]
    group = fixture("groups__list.json")["groups"][0]
    mapped = map_ticket(
        bundle(requester=users[0], assignee=users[1], group=group),
        config,
    )
    shown = mapped.snapshot.shown
    assert shown["subject"] == "Phone calls drop after 30 seconds"  # ticket.subject
    assert shown["requester"] == "Roger Wilco"  # requester_id -> users/show_many
    assert shown["organization"] == "Initech GmbH"  # organization_id -> organizations/{id}
    assert shown["queue"] == "Tier 2"  # group_id -> groups
    assert shown["assignee_name"] == "Ana Agent"  # assignee_id -> users/show_many
    # Unassigned, no organization, a subject typed over two lines: one trimmed line.
    ticket = {**fixture("ticket_show__premier_production.json")["ticket"]}
    ticket.update(subject="  Printer\n on   fire ", organization_id=None, assignee_id=None)
    shown = map_ticket(bundle(ticket=ticket, organization=None), config).snapshot.shown
    assert shown["subject"] == "Printer on fire"
    assert (shown["organization"], shown["assignee_name"], shown["assignee_email"]) == (
        None,
        None,
        None,
    )
    # A ticket with no subject (one made through the API may have none).
    ticket.update(subject=None)
    assert map_ticket(bundle(ticket=ticket), config).snapshot.shown["subject"] is None


def test_a_ticket_maps_to_a_snapshot_in_the_engines_vocabulary(config: ZendeskConfig) -> None:
    snapshot = map_ticket(bundle(), config).snapshot
    assert (snapshot.source, snapshot.external_key, snapshot.policy) == ("zendesk", "35436", "zoom")
    assert snapshot.status == "on_hold"  # Zendesk says "hold"
    assert snapshot.channel == "phone"  # via.channel "voice"
    assert snapshot.plan == "premier"  # organization field first
    assert snapshot.environment == "production"  # drop-down value renamed
    assert snapshot.customer_timezone == "Europe/Berlin"  # organization's "Berlin"
    assert snapshot.customer_country == "DE"
    assert snapshot.created_at == at("2026-11-16T17:00:00Z")
    assert snapshot.updated_at == at("2026-11-16T19:30:00Z")


def test_replies_and_statuses_come_from_the_audits(config: ZendeskConfig) -> None:
    mapped = map_ticket(bundle(), config)
    snapshot = mapped.snapshot
    # The requester's voice comment and slabot's private note are not agent replies.
    assert snapshot.first_response_at == at("2026-11-16T17:45:00Z")
    assert snapshot.last_agent_update_at == at("2026-11-16T18:30:00Z")
    assert [(c.to, c.at) for c in mapped.status_changes] == [
        ("new", at("2026-11-16T17:00:00Z")),
        ("open", at("2026-11-16T17:45:00Z")),
        ("on_hold", at("2026-11-16T18:30:00Z")),
    ]
    assert mapped.status_changes[1].event_key == "zendesk:audit:2127301200:status"
    assert mapped.status_changes[1].actor == f"zendesk-user:{AGENT}"


def test_customer_and_agent_replies_come_from_the_audits_public_comments(
    config: ZendeskConfig,
) -> None:
    snapshot = map_ticket(bundle(), config).snapshot
    # The requester's voice comment created the ticket (its description, not a reply);
    # their 19:30 comment is a reply; slabot's private note is neither.
    assert snapshot.customer_replies == (at("2026-11-16T19:30:00Z"),)
    assert snapshot.agent_replies == (at("2026-11-16T17:45:00Z"), at("2026-11-16T18:30:00Z"))


def test_a_public_comment_by_slabot_or_by_zendesk_itself_is_no_customer_reply(
    config: ZendeskConfig,
) -> None:
    audits = fixture("ticket_audits__reply_hold_reopen.json")["audits"]
    last = audits[-1]
    by_bot = {**last, "author_id": BOT, "events": [{**last["events"][0], "author_id": BOT}]}
    by_system = {**last, "author_id": -1, "events": [{**last["events"][0], "author_id": -1}]}
    for audit in (by_bot, by_system):
        snapshot = map_ticket(bundle(audits=[*audits[:-1], audit]), config).snapshot
        assert snapshot.customer_replies == ()


def test_the_requested_priority_ignores_slabots_own_change(config: ZendeskConfig) -> None:
    mapped = map_ticket(bundle(), config)
    snapshot = mapped.snapshot
    assert snapshot.priority == "P1"  # created urgent; slabot's later "high" is its own write
    assert (snapshot.shown["priority"], snapshot.shown["tags"]) == ("P2", ["plan_premier", "vip"])
    assert mapped.reclassifications == ()


def reclassified(**changes: object) -> TicketBundle:
    """Created normal by the requester, raised to high by a trigger, set urgent by Ana."""
    ticket = fixture("ticket_show__premier_production.json")["ticket"]
    values: dict[str, object] = {
        "ticket": {**ticket, "priority": "urgent", "status": "open"},
        "audits": fixture("ticket_audits__agent_reclassifies.json")["audits"],
    }
    values.update(changes)
    return bundle(**values)


def test_an_agents_priority_change_is_a_reclassification_and_a_triggers_is_requested(
    config: ZendeskConfig,
) -> None:
    mapped = map_ticket(reclassified(), config)
    assert mapped.snapshot.priority == "P2"  # the trigger's "high": not an agent's choice
    assert mapped.snapshot.shown["priority"] == "P1"
    [change] = mapped.reclassifications
    assert (change.change_id, change.priority, change.zendesk_priority) == (
        "2127302300:2127302301",
        "P1",
        "urgent",
    )
    assert (change.author_id, change.actor) == (AGENT, f"zendesk-user:{AGENT}")
    assert change.at == at("2026-11-16T17:30:00Z")


@pytest.mark.parametrize(
    ("author", "who"),
    [(REQUESTER, "the requester"), (4242, "an end user in CC"), (BOT, "slabot")],
)
def test_a_priority_change_by_anyone_but_an_agent_is_not_a_reclassification(
    config: ZendeskConfig, author: int, who: str
) -> None:
    audits = fixture("ticket_audits__agent_reclassifies.json")["audits"]
    audits[2]["author_id"] = author
    mapped = map_ticket(reclassified(audits=audits), config)
    assert mapped.reclassifications == (), who
    # A person's change is what they ask for; slabot's own leaves the trigger's.
    assert mapped.snapshot.priority == ("P2" if author == BOT else "P1"), who


def test_an_agent_who_is_the_requester_asks_rather_than_reclassifies(
    config: ZendeskConfig,
) -> None:
    ticket = {**reclassified().ticket, "requester_id": AGENT}
    mapped = map_ticket(reclassified(ticket=ticket), config)
    assert (mapped.reclassifications, mapped.snapshot.priority) == ((), "P1")


def test_the_priority_an_agent_creates_a_ticket_with_is_the_requested_one(
    config: ZendeskConfig,
) -> None:
    audits = fixture("ticket_audits__agent_reclassifies.json")["audits"][:1]
    audits[0]["author_id"] = AGENT  # Ana opened it on the customer's behalf
    audits[0]["events"][2]["value"] = "urgent"
    mapped = map_ticket(reclassified(audits=audits), config)
    assert (mapped.reclassifications, mapped.snapshot.priority) == ((), "P1")


def test_an_agents_change_without_an_event_id_is_keyed_by_its_audit(
    config: ZendeskConfig,
) -> None:
    audits = fixture("ticket_audits__agent_reclassifies.json")["audits"]
    del audits[2]["events"][0]["id"]
    [change] = map_ticket(reclassified(audits=audits), config).reclassifications
    assert change.change_id == "2127302300:priority"


def test_an_agents_unmapped_or_cleared_priority_is_kept_for_the_refusal() -> None:
    narrow = parse_zendesk_config(
        {"zendesk": {**CONFIG["zendesk"], "priorities": {"P1": "urgent", "P2": "high"}}}
    )
    audits = fixture("ticket_audits__agent_reclassifies.json")["audits"]
    audits[2]["events"][0]["value"] = "low"
    [change] = map_ticket(reclassified(audits=audits), narrow).reclassifications
    assert (change.zendesk_priority, change.priority) == ("low", None)
    audits[2]["events"][0]["value"] = None
    [change] = map_ticket(reclassified(audits=audits), narrow).reclassifications
    assert (change.zendesk_priority, change.priority) == ("", None)


def test_without_the_creating_audit_the_requested_priority_is_the_one_before_the_change(
    config: ZendeskConfig,
) -> None:
    audits = fixture("ticket_audits__agent_reclassifies.json")["audits"][2:]
    mapped = map_ticket(reclassified(audits=audits), config)
    assert mapped.snapshot.priority == "P2"  # "high", the previous_value Ana changed
    assert [c.priority for c in mapped.reclassifications] == ["P1"]


def fired_trigger(audits: list[dict[str, object]] | None = None) -> TicketBundle:
    """Ana replies and opens the ticket; a trigger firing on her update sets it urgent."""
    found = audits or fixture("ticket_audits__agent_update_fires_trigger.json")["audits"]
    return reclassified(audits=found)


def test_a_triggers_priority_change_inside_an_agents_audit_is_requested_not_reclassified(
    config: ZendeskConfig,
) -> None:
    mapped = map_ticket(fired_trigger(), config)
    assert mapped.reclassifications == ()
    assert mapped.snapshot.priority == "P1"  # the trigger's "urgent", as one by Zendesk itself
    # The rest of the audit is still Ana's: her reply and her status change.
    assert mapped.snapshot.first_response_at == at("2026-11-16T17:30:00Z")
    [_, opened] = mapped.status_changes
    assert (opened.to, opened.actor) == ("open", f"zendesk-user:{AGENT}")


@pytest.mark.parametrize(
    "via",
    [
        {"channel": "rule", "source": {"to": {}, "from": {"id": 1, "title": "x"}, "rel": "x"}},
        {"channel": 8, "source": {"to": {}, "from": {"id": 22472716}, "rel": "trigger"}},
        {"channel": "web", "source": {"to": {}, "from": {"id": 7}, "rel": "automation"}},
    ],
    ids=["channel rule", "via id 8", "automation"],
)
def test_a_rules_priority_change_is_known_by_its_channel_or_its_source(
    config: ZendeskConfig, via: dict[str, object]
) -> None:
    audits = fixture("ticket_audits__agent_update_fires_trigger.json")["audits"]
    audits[1]["events"][2]["via"] = via
    mapped = map_ticket(fired_trigger(audits), config)
    assert (mapped.reclassifications, mapped.snapshot.priority) == ((), "P1")


def test_an_agents_own_priority_change_beside_a_triggers_notification_is_a_reclassification(
    config: ZendeskConfig,
) -> None:
    audits = fixture("ticket_audits__agent_update_fires_trigger.json")["audits"]
    del audits[1]["events"][2]["via"]  # Ana set it herself; the trigger only notified
    mapped = map_ticket(fired_trigger(audits), config)
    [change] = mapped.reclassifications
    assert (change.change_id, change.priority, change.actor) == (
        "2127305200:2127305203",
        "P1",
        f"zendesk-user:{AGENT}",
    )
    assert mapped.snapshot.priority == "P3"  # as created


def test_solved_time_is_the_audits_last_solve(config: ZendeskConfig) -> None:
    ticket = dict(fixture("ticket_show__premier_production.json")["ticket"], status="solved")
    audits = fixture("ticket_audits__reply_hold_reopen.json")["audits"]
    audits[-1]["events"].append(
        {"id": 1, "type": "Change", "field_name": "status", "value": "solved"}
    )
    mapped = map_ticket(bundle(ticket=ticket, audits=audits), config)
    assert mapped.snapshot.solved_at == at("2026-11-16T19:30:00Z")
    assert mapped.warnings == ()


def test_a_solved_ticket_without_audits_is_flagged_not_silently_guessed(
    config: ZendeskConfig,
) -> None:
    ticket = dict(fixture("ticket_show__premier_production.json")["ticket"], status="closed")
    mapped = map_ticket(bundle(ticket=ticket, audits=[]), config)
    assert mapped.snapshot.solved_at == at("2026-11-16T19:30:00Z")
    assert "no audit shows when" in mapped.warnings[0]


def test_due_fields_shown_are_read_from_the_configured_custom_fields(
    config: ZendeskConfig,
) -> None:
    mapped = map_ticket(bundle(), config)
    assert mapped.due_shown == {
        "first_response": "2026-11-16T21:00:00Z",
        "next_update": None,
        "restoration": None,
    }
    # The snapshot tells the store what the fields show and how they write an instant, so
    # the store owes the due-date writes like the priority and the tags.
    assert mapped.snapshot.shown["due"] == mapped.due_shown
    formats = mapped.snapshot.shown["due_format"]
    assert formats["first_response"] == {"format": "instant", "zone": "UTC"}
    assert set(formats) == set(mapped.due_shown)


def test_the_audits_statuses_travel_with_the_snapshot(config: ZendeskConfig) -> None:
    mapped = map_ticket(bundle(), config)
    history = mapped.snapshot.status_history
    assert [(c.at, c.to, c.key, c.actor) for c in history] == [
        (c.at, c.to, c.event_key, c.actor) for c in mapped.status_changes
    ]
    # A ticket only ever new or open has nothing to derive from them.
    ticket = dict(fixture("ticket_show__premier_production.json")["ticket"], status="open")
    audits = [
        audit
        for audit in fixture("ticket_audits__reply_hold_reopen.json")["audits"]
        if not any(e.get("value") in ("hold", "pending") for e in audit.get("events") or ())
    ]
    plain = map_ticket(bundle(ticket=ticket, audits=audits), config)
    assert {c.to for c in plain.status_changes} <= {"new", "open"}
    assert plain.snapshot.status_history == ()


def test_due_values_are_iso_instants_or_dates_in_the_configured_zone(
    config: ZendeskConfig,
) -> None:
    due = datetime(2026, 11, 17, 7, 30, tzinfo=UTC)  # 23:30 on the 16th in Los Angeles
    assert due_field_values(
        {"first_response": due, "restoration": None, "next_update": due}, config
    ) == {
        "first_response": "2026-11-17T07:30:00Z",
        "restoration": None,
        "next_update": "2026-11-16",
    }


def test_fields_fall_back_in_order_and_time_zones_map_to_iana(config: ZendeskConfig) -> None:
    organization = {"id": 509974, "organization_fields": {}}
    snapshot = map_ticket(bundle(organization=organization), config).snapshot
    assert snapshot.plan == "premier"  # from the tag plan_premier
    assert snapshot.customer_timezone == "America/New_York"  # requester's iana_time_zone
    assert snapshot.customer_country is None


def test_an_unknown_time_zone_is_dropped_with_a_warning(config: ZendeskConfig) -> None:
    organization = {"id": 1, "organization_fields": {"time_zone": "Atlantis", "country": "Mars"}}
    mapped = map_ticket(bundle(organization=organization, requester=None), config)
    assert mapped.snapshot.customer_timezone is None
    assert mapped.snapshot.customer_country is None
    assert len(mapped.warnings) == 2 and "Atlantis" in mapped.warnings[0]


@pytest.mark.parametrize(
    ("ticket", "problem"),
    [
        ({"id": 1, "status": "open"}, "created_at is missing"),
        ({"id": 1, "status": "escalated", "created_at": "2026-11-16T17:00:00Z"}, "status"),
        ({"id": "x", "status": "open", "created_at": "2026-11-16T17:00:00Z"}, "not a ticket id"),
        ({"id": 1, "status": "open", "created_at": "yesterday"}, "not an ISO 8601"),
    ],
)
def test_payload_drift_fails_loudly(
    config: ZendeskConfig, ticket: dict[str, object], problem: str
) -> None:
    with pytest.raises(PayloadError, match=problem):
        map_ticket(TicketBundle(ticket), config)


def test_zendesk_time_zone_names_map_to_iana_names() -> None:
    assert to_iana("Eastern Time (US & Canada)") == "America/New_York"
    assert to_iana("Bratislava") == "Europe/Bratislava"
    assert to_iana("Europe/Prague") == "Europe/Prague"  # already IANA
    assert to_iana("Kyev") == "Europe/Kiev"  # an older Rails spelling
    assert to_iana("Nowhere") is None


def test_every_rails_zone_resolves() -> None:
    for name, iana in RAILS_TIME_ZONES.items():
        assert ZoneInfo(iana), name


# --- webhook bodies ---------------------------------------------------------------------------


def test_a_trigger_body_names_the_ticket() -> None:
    notice = parse_webhook(fixture_bytes("trigger__ticket_updated.json"))
    assert notice.ticket_id == 35436
    assert notice.updated_at == at("2026-11-16T19:30:00Z")
    assert notice.event_type is None


def test_an_event_subscription_payload_is_read_with_its_case_normalized() -> None:
    notice = parse_webhook(fixture_bytes("ticket_event__status_changed.json"))
    assert notice.ticket_id == 35436
    assert notice.event_type == "zen:event-type:ticket.status_changed"
    assert notice.event_id == "0f4a9e2c-4a55-4d7e-9a0b-6d1f3a2b8c11"
    assert (notice.detail["status"], notice.detail["priority"]) == ("hold", "high")
    assert parse_webhook(fixture_bytes("ticket_event__priority_changed.json")).ticket_id == 35436


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"id": 5}', "no 'ticket_id'"),
        (fixture_bytes("trigger__placeholder_not_rendered.json"), "placeholder was not rendered"),
        (fixture_bytes("user_event__created.json"), "not a ticket event"),
        (b'{"type": "zen:event-type:ticket.created", "detail": "x"}', "'detail' must be"),
    ],
)
def test_malformed_webhook_bodies_say_what_is_wrong(body: bytes, problem: str) -> None:
    with pytest.raises(PayloadError, match=problem):
        parse_webhook(body)


# --- configuration -----------------------------------------------------------------------------


def test_the_shipped_example_config_is_valid() -> None:
    from pathlib import Path

    from connectors.zendesk.config import load_zendesk_config

    root = Path(__file__).resolve().parents[3]
    loaded = load_zendesk_config(root / "config" / "slabot.yaml")
    assert loaded.priorities == {"P1": "urgent", "P2": "high", "P3": "normal", "P4": "low"}
    assert loaded.due_fields["first_response"].id == 360001000010


def test_unknown_keys_are_refused_with_their_path() -> None:
    data = {"zendesk": {**CONFIG["zendesk"], "prioritys": {}}}
    with pytest.raises(ZendeskConfigError, match=r"zendesk\.prioritys: Extra inputs"):
        parse_zendesk_config(data)
    nested = {"zendesk": {"policy": "zoom", "fields": {"plan": {"from": "tag", "prefx": "p"}}}}
    with pytest.raises(ZendeskConfigError, match=r"zendesk\.fields\.plan"):
        parse_zendesk_config(nested)


def test_a_zendesk_priority_may_stand_for_one_slabot_priority_only() -> None:
    data = {"zendesk": {"policy": "zoom", "priorities": {"P1": "urgent", "P2": "urgent"}}}
    with pytest.raises(ZendeskConfigError, match="given to both P1 and P2"):
        parse_zendesk_config(data)


def test_a_missing_section_is_named() -> None:
    with pytest.raises(ZendeskConfigError, match="no 'zendesk:' section"):
        parse_zendesk_config({"jira": {}})
