"""Zendesk JSON -> slabot's vocabulary, and back (pure: no network, no clock, no store).

Input is the JSON Zendesk's API returns (``GET /tickets/{id}``, its audits, the requester and
the organization), as plain dicts, so fixtures and the live client feed the same code.
What cannot be read (a ticket without ``created_at``, an unknown status) raises
``PayloadError``: payload drift must fail loudly. What is merely unusable (a time zone
nobody knows) is dropped and reported in ``Mapped.warnings``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from connectors import mapping
from connectors.mapping import History, PayloadError, StatusChange, parse_instant, text
from connectors.zendesk.config import DueField, ZendeskConfig
from connectors.zendesk.timezones import to_iana
from slabot.store.snapshot import Snapshot
from slabot.store.writes import due_text

SOURCE = "zendesk"

STATUSES = {
    "new": "new",
    "open": "open",
    "pending": "pending",
    "hold": "on_hold",
    "on-hold": "on_hold",
    "on_hold": "on_hold",
    "solved": "solved",
    "closed": "closed",
}
"""Zendesk status -> engine status (Zendesk says ``hold``; event payloads say ``HOLD``)."""


class DeletedTicketError(PayloadError):
    """The ticket is deleted now (in Zendesk's trash): there is nothing to ingest. slabot
    keeps what it stored; a restored ticket is ingested again with its history."""


DELETED = "deleted"
"""The status Zendesk shows for a deleted ticket (``GET /tickets/{id}``, the incremental
export) and records in audits: ``Change`` on ``status`` to ``deleted`` when an agent deletes
the ticket, and from ``deleted`` back to the earlier status when it is restored."""


@dataclass(frozen=True, slots=True)
class TicketBundle:
    """Everything the mapping reads about one ticket, as Zendesk's JSON.

    ``audits`` oldest first; ``agent_ids`` are the authors among them whose role is agent
    or admin; ``bot_user_id`` is slabot's own Zendesk user (its changes are not people's).
    """

    ticket: Mapping[str, Any]
    audits: Sequence[Mapping[str, Any]] = ()
    requester: Mapping[str, Any] | None = None
    organization: Mapping[str, Any] | None = None
    agent_ids: frozenset[int] = frozenset()
    bot_user_id: int | None = None
    assignee: Mapping[str, Any] | None = None
    """The assignee user (``ticket.assignee_id``), read with the requester."""
    group: Mapping[str, Any] | None = None
    """The ticket's group (``ticket.group_id``): its name is the queue."""
    agent_url: str | None = None
    """The ticket's page for agents: ``https://acme.zendesk.com/agent/tickets/123``."""


@dataclass(frozen=True, slots=True)
class PriorityChange:
    """An agent (not slabot, not the requester) changed the priority in Zendesk: a
    reclassification."""

    change_id: str
    """``<audit id>:<event id>``: the key that makes it count once."""
    at: datetime
    author_id: int
    actor: str
    """Who, for the audit: ``zendesk-user:235323``."""
    zendesk_priority: str
    """What the agent set (empty: they cleared the priority)."""
    priority: str | None
    """slabot's priority for it (None: a Zendesk priority not in ``zendesk.priorities``)."""


@dataclass(frozen=True, slots=True)
class Mapped(mapping.Mapped[PriorityChange]):
    """One ticket in slabot's terms; ``due_shown``: due target -> what its configured custom
    field shows now."""


def map_ticket(bundle: TicketBundle, config: ZendeskConfig) -> Mapped:
    """The snapshot, status history, agents' priority changes and shown due values of a
    Zendesk ticket.

    >>> from connectors.zendesk.config import ZendeskConfig
    >>> bundle = TicketBundle({"id": 7, "created_at": "2026-11-16T17:00:00Z",
    ...     "updated_at": "2026-11-16T17:05:00Z", "status": "hold", "priority": "high",
    ...     "tags": ["vip"], "via": {"channel": "voice"}})
    >>> mapped = map_ticket(bundle, ZendeskConfig(policy="zoom"))
    >>> mapped.snapshot.status, mapped.snapshot.priority, mapped.snapshot.channel
    ('on_hold', 'P2', 'phone')
    """
    ticket = bundle.ticket
    ticket_id = _ticket_id(ticket.get("id"))
    where = f"Zendesk ticket {ticket_id}"
    warnings: list[str] = []
    created_at = parse_instant(ticket.get("created_at"), f"{where}: created_at", required=True)
    assert created_at is not None
    updated_at = parse_instant(ticket.get("updated_at"), f"{where}: updated_at") or created_at
    if str(ticket.get("status") or "").strip().lower() == DELETED:
        raise DeletedTicketError(
            f"{where} is deleted in Zendesk: not ingested (slabot keeps what it stored; "
            "restore the ticket to have it followed again)"
        )
    status = _status(ticket.get("status"), where)
    tags = mapping.string_set(ticket.get("tags"), f"{where}: tags")
    custom = _custom_fields(ticket.get("custom_fields"), where)

    history = _History.read(bundle, config, where)
    requested = history.requested_priority
    if requested is None and not history.priority_seen:
        requested = ticket.get("priority")
    priority = config.slabot_priority(requested) if requested else None

    values: dict[str, Any] = {
        name: _read_field(name, config, ticket, tags, custom, bundle)
        for name in mapping.ENGINE_FIELDS
    }
    values["customer_timezone"] = mapping.customer_zone(
        values["customer_timezone"], where, warnings, to_iana
    )
    values["customer_country"] = mapping.customer_country(
        values["customer_country"], where, warnings
    )

    via = ticket.get("via") or {}
    channel = via.get("channel") if isinstance(via, Mapping) else None
    if channel is not None:
        channel = config.channels.get(str(channel), str(channel))

    solved_at = history.solved_at
    if status in ("solved", "closed") and solved_at is None:
        # The audits did not say when (truncated history): the last update is the best
        # available bound, and the warning makes the gap visible.
        warnings.append(f"{where}: solved but no audit shows when; using updated_at")
        solved_at = updated_at

    shown_priority = config.slabot_priority(ticket.get("priority"))
    due_shown: dict[str, str | None] = {
        target: text(custom.get(due.id)) for target, due in sorted(config.due_fields.items())
    }
    shown: dict[str, Any] = {
        "priority": shown_priority,
        "tags": sorted(tags),
        # What Slack and the dashboard read (not written back): docs/slack.md.
        "key": f"ZD-{ticket_id}",
        "assignee_email": _email(bundle.assignee),
        "queue": text((bundle.group or {}).get("name")),
        "url": bundle.agent_url,
        # Ticket context (customer data: never logged): docs/zendesk.md.
        "subject": mapping.one_line(ticket.get("subject")),
        "requester": mapping.one_line((bundle.requester or {}).get("name")),
        "organization": mapping.one_line((bundle.organization or {}).get("name")),
        "assignee_name": mapping.one_line((bundle.assignee or {}).get("name")),
    }
    if due_shown:
        shown["due"] = due_shown
        shown["due_format"] = {
            target: _due_format(due) for target, due in sorted(config.due_fields.items())
        }
    snapshot = Snapshot(
        source=SOURCE,
        external_key=str(ticket_id),
        policy=config.policy or "",  # empty: the service's routing rules decide
        updated_at=updated_at,
        created_at=created_at,
        status=status,
        priority=priority,
        channel=channel,
        first_response_at=history.first_reply_at,
        last_agent_update_at=history.last_reply_at,
        solved_at=solved_at if status in ("solved", "closed") else None,
        shown=shown,
        actor=history.last_actor,
        status_history=mapping.status_history(history.status_changes, status),
        routing=routing_attributes(bundle, tags, custom),
        agent_replies=tuple(history.agent_replies),
        customer_replies=tuple(history.customer_replies),
        **values,
    )
    return Mapped.read(snapshot, history, due_shown, warnings)


def _due_format(due: DueField) -> dict[str, str]:
    """How a due field shows its instant, in the store's terms (``due_text``)."""
    return {"format": due.format, "zone": due.zone}


def due_field_values(
    dues: Mapping[str, datetime | None], config: ZendeskConfig
) -> dict[str, str | None]:
    """Due target -> the text its custom field should show (None: empty the field)."""
    return {
        target: due_text(dues.get(target), _due_format(due))
        for target, due in config.due_fields.items()
    }


# --- webhook bodies ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebhookNotice:
    """What a webhook says: which ticket changed, and (if it says) when and how."""

    ticket_id: int
    updated_at: datetime | None
    event_type: str | None
    """``zen:event-type:ticket.priority_changed`` for event subscriptions; None for a trigger."""
    event_id: str | None
    detail: Mapping[str, Any] = field(default_factory=dict)
    """Event subscriptions: the ticket fields, case normalized (``status``: ``hold``)."""


TICKET_EVENT_PREFIX = "zen:event-type:ticket."


def parse_webhook(body: bytes) -> WebhookNotice:
    """Read a trigger body (``{"ticket_id": "123", "updated_at": "..."}``) or an event
    subscription (``{"type": "zen:event-type:ticket.*", "detail": {...}}``).

    Raises ``PayloadError`` saying what is wrong (the handler answers 400 with it).
    """
    data = mapping.json_object(body)
    event_type = data.get("type")
    if event_type is not None:
        return _parse_event(data, event_type)
    if "ticket_id" not in data:
        keys = ", ".join(sorted(data)) or "none"
        raise PayloadError(
            f"the body has no 'ticket_id' (keys: {keys}); use the trigger body template of "
            "docs/zendesk.md or a ticket event subscription"
        )
    ticket_id = _ticket_id(data["ticket_id"], "ticket_id")
    updated_at = _webhook_instant(data.get("updated_at"), "updated_at")
    return WebhookNotice(ticket_id, updated_at, None, None)


def _parse_event(data: Mapping[str, Any], event_type: Any) -> WebhookNotice:
    if not isinstance(event_type, str) or not event_type.startswith(TICKET_EVENT_PREFIX):
        raise PayloadError(
            f"event type {event_type!r} is not a ticket event ({TICKET_EVENT_PREFIX}*); "
            "subscribe the webhook to ticket events only"
        )
    detail = data.get("detail")
    if not isinstance(detail, Mapping):
        raise PayloadError(f"{event_type}: 'detail' must be an object with the ticket")
    raw_id = detail.get("id")
    if raw_id is None:
        subject = str(data.get("subject") or "")
        raw_id = subject.removeprefix("zen:ticket:") if subject.startswith("zen:ticket:") else None
    if raw_id is None:
        raise PayloadError(f"{event_type}: neither detail.id nor subject names the ticket")
    ticket_id = _ticket_id(raw_id, "detail.id")
    normalized = dict(detail)
    for key in ("status", "priority", "type"):
        value = normalized.get(key)
        if isinstance(value, str):
            normalized[key] = value.lower()
    updated_at = _webhook_instant(detail.get("updated_at"), "detail.updated_at")
    event_id = data.get("id")
    return WebhookNotice(
        ticket_id,
        updated_at,
        event_type,
        str(event_id) if event_id is not None else None,
        normalized,
    )


# --- reading helpers ----------------------------------------------------------------------------


@dataclass(slots=True)
class _History(History[PriorityChange]):
    """What the audits say: replies, statuses, the requested priority, agents' priorities."""

    priority_seen: bool = False

    @classmethod
    def read(cls, bundle: TicketBundle, config: ZendeskConfig, where: str) -> _History:
        history = cls()
        changes: list[StatusChange] = []
        reclassifications: list[PriorityChange] = []
        requester_id = bundle.ticket.get("requester_id")
        # ISO 8601 UTC texts sort as time; the id breaks ties in creation order.
        audits = sorted(
            bundle.audits, key=lambda a: (str(a.get("created_at") or ""), a.get("id") or 0)
        )
        for audit in audits:
            audit_id = audit.get("id")
            at = parse_instant(
                audit.get("created_at"), f"{where}: audit {audit_id} created_at", required=True
            )
            assert at is not None
            author = audit.get("author_id")
            by_bot = bundle.bot_user_id is not None and author == bundle.bot_user_id
            # -1 is Zendesk itself (triggers, automations): never in agent_ids.
            by_agent = (
                author in bundle.agent_ids
                and author != bundle.bot_user_id
                and author != requester_id
            )
            actor = f"zendesk-user:{author}" if author is not None and author != -1 else None
            history.last_actor = actor
            creating = any(e.get("type") == "Create" for e in audit.get("events") or ())
            for event in audit.get("events") or ():
                kind = event.get("type")
                name = event.get("field_name")
                if kind in ("Create", "Change") and name == "status":
                    # A deleted span (open -> deleted -> open) is time with no working
                    # status: the store pauses the clocks through it (docs/zendesk.md).
                    to = _status(event.get("value"), where, deleted=True)
                    changes.append(StatusChange(f"zendesk:audit:{audit_id}:status", at, to, actor))
                    if to == "solved":
                        history.solved_at = at
                elif kind in ("Create", "Change") and name == "priority":
                    value = event.get("value") or None
                    if not history.priority_seen and kind == "Change":
                        # No creation seen (a truncated history): the priority before the
                        # first change is the one the ticket was created with.
                        history.requested_priority = event.get("previous_value") or None
                    history.priority_seen = True
                    # As created, or as last set by someone who is not an agent (the
                    # requester, a trigger); an agent's change is a reclassification;
                    # slabot's is neither. A trigger firing on an agent's update writes its
                    # changes into the agent's audit, each event with its own via (rule):
                    # those are the trigger's, not the agent's.
                    if by_bot:
                        continue
                    if kind == "Change" and by_agent and not _by_rule(event, audit):
                        assert author is not None
                        reclassifications.append(
                            _priority_change(audit_id, event, at, author, value, config, where)
                        )
                    else:
                        history.requested_priority = value
                elif kind in ("Comment", "VoiceComment") and event.get("public"):
                    comment_author = event.get("author_id", author)
                    if (
                        comment_author in bundle.agent_ids
                        and comment_author != bundle.bot_user_id
                        and comment_author != requester_id
                    ):
                        history.agent_replied(at)
                    elif (
                        not creating
                        and comment_author not in (None, -1)
                        and comment_author != bundle.bot_user_id
                    ):
                        history.customer_replies.append(at)
        history.status_changes = tuple(changes)
        history.reclassifications = tuple(reclassifications)
        return history


_RULE_CHANNELS = ("rule", 8)
"""Zendesk's via type ``rule`` (via id 8): a trigger or an automation."""
_RULE_RELS = ("trigger", "automation")


def _by_rule(event: Mapping[str, Any], audit: Mapping[str, Any]) -> bool:
    """Whether a trigger or an automation made the event: its via says so, or, when it has
    none (an event only has one when it differs from its audit's), its audit's."""
    via = event.get("via")
    if not isinstance(via, Mapping):
        via = audit.get("via")
    if not isinstance(via, Mapping):
        return False
    source = via.get("source")
    rel = source.get("rel") if isinstance(source, Mapping) else None
    return via.get("channel") in _RULE_CHANNELS or rel in _RULE_RELS


def _priority_change(
    audit_id: Any,
    event: Mapping[str, Any],
    at: datetime,
    author: int,
    value: str | None,
    config: ZendeskConfig,
    where: str,
) -> PriorityChange:
    if audit_id is None:
        raise PayloadError(f"{where}: an audit without an id changes the priority")
    # An audit changes the priority at most once: its id alone keys an event without one.
    event_id = event.get("id")
    change_id = f"{audit_id}:{event_id if event_id is not None else 'priority'}"
    return PriorityChange(
        change_id,
        at,
        author,
        f"zendesk-user:{author}",
        str(value or ""),
        config.slabot_priority(value),
    )


def _ticket_id(value: Any, name: str = "id") -> int:
    if isinstance(value, bool):
        raise PayloadError(f"{name} {value!r} is not a ticket id")
    # Zendesk's ids are 64-bit. ASCII digits only: "²".isdigit() holds but int("²") fails,
    # and 5,000 digits exceed int()'s limit (both were 500s, found by fuzzing).
    if isinstance(value, int) and 0 < value < 2**63:
        return value
    text = value.strip() if isinstance(value, str) else ""
    if text.isascii() and text.isdigit() and len(text) <= 19 and 0 < int(text) < 2**63:
        return int(text)
    shown = repr(value)[:60]
    hint = " (the placeholder was not rendered)" if "{{" in str(value) else ""
    raise PayloadError(f"{name} {shown} is not a ticket id{hint}")


def _webhook_instant(value: Any, name: str) -> datetime | None:
    if isinstance(value, str) and "{{" in value:
        raise PayloadError(f"{name} {value!r}: the placeholder was not rendered")
    return parse_instant(value, name)


def _status(value: Any, where: str, *, deleted: bool = False) -> str:
    """The engine's status for a Zendesk one; ``deleted`` (accepted in audits only, where a
    ticket was deleted and later restored) stays ``deleted``."""
    text = str(value).strip().lower() if value is not None else None
    if deleted and text == DELETED:
        return DELETED
    status = STATUSES.get(text) if text is not None else None
    if status is None:
        raise PayloadError(
            f"{where}: status {value!r}; expected one of new, open, pending, hold, solved, closed"
        )
    return status


def routing_attributes(
    bundle: TicketBundle, tags: Iterable[str], custom: Mapping[int, Any]
) -> dict[str, Any]:
    """What routing rules read about a Zendesk ticket (bot.routing): brand and form ids as
    text, group and organization names, tags, ticket fields by id, organization fields by
    key. Absent values are left out."""
    ticket = bundle.ticket
    found: dict[str, Any] = {
        "brand": _id_text(ticket.get("brand_id")),
        "form": _id_text(ticket.get("ticket_form_id")),
        "group": mapping.one_line((bundle.group or {}).get("name")),
        "organization": mapping.one_line((bundle.organization or {}).get("name")),
        "tags": sorted(tags),
        "custom_fields": {str(key): value for key, value in custom.items() if value is not None},
    }
    organization_fields = (bundle.organization or {}).get("organization_fields")
    if isinstance(organization_fields, Mapping):
        found["organization_fields"] = {
            str(key): value for key, value in organization_fields.items() if value is not None
        }
    return {key: value for key, value in found.items() if value}


def _id_text(value: Any) -> str | None:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _custom_fields(value: Any, where: str) -> dict[int, Any]:
    if value is None:
        return {}
    if not isinstance(value, list):
        raise PayloadError(f"{where}: custom_fields must be a list of {{id, value}} objects")
    fields: dict[int, Any] = {}
    for item in value:
        if not isinstance(item, Mapping) or not isinstance(item.get("id"), int):
            raise PayloadError(f"{where}: custom_fields must be a list of {{id, value}} objects")
        fields[item["id"]] = item.get("value")
    return fields


def _email(user: Mapping[str, Any] | None) -> str | None:
    email = text((user or {}).get("email"))
    return email.lower() if email else None


def _read_field(
    name: str,
    config: ZendeskConfig,
    ticket: Mapping[str, Any],
    tags: Iterable[str],
    custom: Mapping[int, Any],
    bundle: TicketBundle,
) -> str | None:
    def raw(source: Any) -> Any:
        kind = source.source
        if kind == "ticket_field":
            return custom.get(source.id)
        if kind == "organization_field":
            fields = (bundle.organization or {}).get("organization_fields") or {}
            return fields.get(source.key)
        if kind == "user_field":
            fields = (bundle.requester or {}).get("user_fields") or {}
            return fields.get(source.key)
        if kind == "tag":
            found = sorted(t for t in tags if t.startswith(source.prefix))
            return found[0][len(source.prefix) :] if found else None
        if kind == "requester_time_zone":
            requester = bundle.requester or {}
            return requester.get("iana_time_zone") or requester.get("time_zone")
        return None

    return mapping.first_value(config.sources(name), raw)
