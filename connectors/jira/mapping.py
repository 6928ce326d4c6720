"""Jira JSON -> slabot's vocabulary, and back (pure: no network, no clock, no store).

Input is the JSON Jira Cloud's REST API returns (``GET /rest/api/3/issue/{id}`` with its
changelog and comments) and the JSON its webhooks post, as plain dicts, so fixtures and the
live client feed the same code. What cannot be read (an issue without ``created``, a body
without ``webhookEvent``) raises ``PayloadError``: payload drift must fail loudly. What is
merely unusable (a time zone nobody knows) is dropped and reported in ``Mapped.warnings``.

Jira quirks this module handles:

- Times look like ``2026-11-16T17:45:00.000+0000`` (no colon in the offset).
- The changelog holds each change with its author; the issue's creation is not in it, so
  the status and priority an issue was created with are the ``fromString`` of the first
  change of that field (or the current value when it never changed).
- Jira Service Management marks a comment internal with ``jsdPublic: false`` (and the
  ``sd.public.comment`` property); a comment restricted to a group or role carries
  ``visibility``. Either is not a public reply.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from connectors import mapping
from connectors.jira.config import JiraConfig
from connectors.mapping import ENGINE_FIELDS, History, PayloadError, StatusChange
from connectors.mapping import parse_instant as parse_instant
from connectors.mapping import text as plain_text
from slabot.store.snapshot import Snapshot

SOURCE = "jira"
FIELDS = (*ENGINE_FIELDS, "channel")
"""What ``jira.fields`` can say where to read: the engine's fields and the channel."""
NOT_PEOPLE = frozenset({"app", "customer"})
"""``accountType`` of accounts that are never agents: apps (Automation for Jira, other
integrations) and Jira Service Management portal customers."""


@dataclass(frozen=True, slots=True)
class IssueBundle:
    """Everything the mapping reads about one issue, as Jira's JSON.

    ``issue`` is the issue (``fields`` with every field); ``histories`` its changelog and
    ``comments`` its comments, oldest first. ``agent_ids`` are the account ids that count as
    agents (None: anyone but the reporter, apps and portal customers). ``bot_account_id``
    is slabot's own account (its changes are not people's). ``status_categories`` maps a
    status name (lower case) to its category key (``new``, ``indeterminate``, ``done``),
    for statuses the changelog names.
    """

    issue: Mapping[str, Any]
    histories: Sequence[Mapping[str, Any]] = ()
    comments: Sequence[Mapping[str, Any]] = ()
    agent_ids: frozenset[str] | None = None
    bot_account_id: str | None = None
    status_categories: Mapping[str, str] = field(default_factory=dict)
    site_url: str | None = None
    """The Jira site (``https://acme.atlassian.net``): links go to ``/browse/<key>``."""


@dataclass(frozen=True, slots=True)
class PriorityChange:
    """A person (an agent, not slabot) set the priority in Jira: a reclassification."""

    change_id: str
    """The changelog entry's id: the key that makes it count once."""
    at: datetime
    account_id: str
    actor: str
    """Who, for the audit: ``Ana Agent (jira 5b10ac8d82e05b22cc7d4ef5)``."""
    jira_priority: str
    priority: str | None
    """slabot's priority for it (None: a Jira priority not in ``jira.priorities``)."""


@dataclass(frozen=True, slots=True)
class Mapped(mapping.Mapped[PriorityChange]):
    """One issue in slabot's terms; ``due_shown``: what the due fields show now, ``duedate``
    (``2026-11-24``) and, when configured, ``instant`` (the custom date-time field, as a UTC
    ``...Z`` instant)."""


def map_issue(bundle: IssueBundle, config: JiraConfig) -> Mapped:
    """The snapshot, status history, agents' priority changes and shown due values.

    >>> from connectors.jira.config import JiraConfig
    >>> bundle = IssueBundle({"id": "10001", "key": "SUP-1", "fields": {
    ...     "created": "2026-11-16T17:00:00.000+0000", "updated": "2026-11-16T17:05:00.000+0000",
    ...     "status": {"name": "Waiting for customer", "statusCategory": {"key": "indeterminate"}},
    ...     "priority": {"name": "High"}, "labels": ["vip"]}})
    >>> mapped = map_issue(bundle, JiraConfig(policy="zoom", projects=["SUP"]))
    >>> mapped.snapshot.external_key, mapped.snapshot.status, mapped.snapshot.priority
    ('10001', 'pending', 'P2')
    """
    issue = bundle.issue
    issue_id = issue_id_of(issue)
    key = issue.get("key")
    where = f"Jira issue {key or issue_id}"
    fields = issue.get("fields")
    if not isinstance(fields, Mapping):
        raise PayloadError(f"{where}: 'fields' must be an object with the issue's fields")
    warnings: list[str] = []
    created_at = parse_instant(fields.get("created"), f"{where}: created", required=True)
    assert created_at is not None
    updated_at = parse_instant(fields.get("updated"), f"{where}: updated") or created_at
    status = _current_status(fields.get("status"), config, where)
    labels = mapping.string_set(fields.get("labels"), f"{where}: labels")
    reporter = _account(fields.get("reporter"))

    history = _History.read(bundle, config, reporter, created_at, where)
    values: dict[str, Any] = {name: _read_field(name, config, fields, labels) for name in FIELDS}
    values["customer_timezone"] = mapping.customer_zone(
        values["customer_timezone"], where, warnings
    )
    values["customer_country"] = mapping.customer_country(
        values["customer_country"], where, warnings
    )
    for unknown in history.unknown_priorities:
        warnings.append(
            f"{where}: Jira priority {unknown!r} is not in jira.priorities; it is ignored"
        )

    solved_at = None
    if status in ("solved", "closed"):
        solved_at = history.solved_at or parse_instant(
            fields.get("resolutiondate"), f"{where}: resolutiondate"
        )
        if solved_at is None:
            warnings.append(f"{where}: done but nothing shows when; using updated")
            solved_at = updated_at

    shown_priority = config.slabot_priority(_name(fields.get("priority")))
    snapshot = Snapshot(
        source=SOURCE,
        external_key=issue_id,
        policy=config.policy or "",  # empty: the service's routing rules decide
        updated_at=updated_at,
        created_at=created_at,
        status=status,
        priority=history.requested_priority,
        first_response_at=history.first_reply_at,
        last_agent_update_at=history.last_reply_at,
        agent_replies=tuple(history.agent_replies),
        customer_replies=tuple(history.customer_replies),
        solved_at=solved_at,
        shown={
            "priority": shown_priority,
            "tags": sorted(labels),
            # What Slack and the dashboard read (not written back): docs/slack.md.
            "key": key if isinstance(key, str) and key else None,
            "assignee_email": _assignee_email(fields.get("assignee")),
            "queue": _project_key(fields.get("project"), key),
            "url": _browse_url(bundle.site_url, key),
            # Ticket context (customer data: never logged): docs/jira.md.
            "subject": mapping.one_line(fields.get("summary")),
            "requester": _display_name(fields.get("reporter")),
            "organization": _organizations(fields, config),
            "assignee_name": _display_name(fields.get("assignee")),
        },
        actor=history.last_actor,
        # Applied with the snapshot, in one transaction: the reopening, pauses and solve come
        # from the changelog entries, never from the ``updated`` time (issue 14).
        status_history=mapping.status_history(history.status_changes, status),
        routing=routing_attributes(fields, labels, key),
        **values,
    )
    due_shown: dict[str, str | None] = {"duedate": _text(fields.get("duedate"))}
    if config.due_instant_field is not None:
        raw = fields.get(config.due_instant_field.id)
        shown_instant = parse_instant(raw, f"{where}: {config.due_instant_field.id}")
        due_shown["instant"] = iso_z(shown_instant) if shown_instant else None
    return Mapped.read(snapshot, history, due_shown, warnings)


# --- write-back values ----------------------------------------------------------------------


def duedate_value(instant: datetime | None, zone: Any) -> str | None:
    """Jira's ``duedate`` for a due instant: its date in ``zone`` (a tzinfo)."""
    if instant is None:
        return None
    local: date = instant.astimezone(zone).date()
    return local.isoformat()


def datetime_field_value(instant: datetime) -> str:
    """A date-time custom field's value as Jira takes it: ``2026-11-24T08:30:00.000+0000``."""
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def iso_z(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- webhook bodies ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebhookNotice:
    """What a Jira webhook says: which event, about which issue, by whom, what changed."""

    event: str
    issue_id: str | None
    issue_key: str | None
    account_id: str | None
    """Who made the change (``user.accountId``; for comments the comment's author)."""
    timestamp: datetime | None
    changelog_items: tuple[Mapping[str, Any], ...] = ()
    changelog_id: str | None = None

    @property
    def subject(self) -> str:
        return self.issue_id or self.issue_key or ""

    def changed(self, field_name: str) -> bool:
        return any(item.get("field") == field_name for item in self.changelog_items)


def parse_webhook(body: bytes) -> WebhookNotice:
    """Read a Jira webhook body (``{"webhookEvent": "jira:issue_updated", "issue": ...}``).

    Raises ``PayloadError`` saying what is wrong (the handler answers 400 with it). Events
    about no issue (projects, versions, users...) are read with ``issue_id`` None.
    """
    data = mapping.json_object(body)
    event = data.get("webhookEvent")
    if not isinstance(event, str) or not event.strip():
        keys = ", ".join(sorted(data)[:12]) or "none"
        raise PayloadError(
            f"the body has no 'webhookEvent' (keys: {keys}); this endpoint takes Jira's "
            "webhooks (docs/jira.md)"
        )
    event = event.strip()
    timestamp = None
    raw_time = data.get("timestamp")
    if isinstance(raw_time, int) and not isinstance(raw_time, bool):
        try:
            timestamp = datetime.fromtimestamp(raw_time / 1000, UTC)
        except (OverflowError, OSError, ValueError):  # out of range: was a 500 (fuzzing)
            raise PayloadError(
                f"{event}: timestamp {repr(raw_time)[:30]} is not a time in milliseconds"
            ) from None
    issue = data.get("issue")
    issue_id = issue_key = None
    if issue is not None:
        if not isinstance(issue, Mapping):
            raise PayloadError(f"{event}: 'issue' must be an object")
        issue_id = issue_id_of(issue, f"{event}: issue.id")
        key = issue.get("key")
        issue_key = str(key) if isinstance(key, str) and key else None
    elif event.startswith("jira:issue_") or event.startswith("comment_"):
        raise PayloadError(f"{event}: the body has no 'issue'")
    account = _account(data.get("user"))
    comment = data.get("comment")
    if comment is not None and not isinstance(comment, Mapping):
        raise PayloadError(f"{event}: 'comment' must be an object")
    if account is None and isinstance(comment, Mapping):
        account = _account(comment.get("author"))
    items: tuple[Mapping[str, Any], ...] = ()
    changelog_id = None
    changelog = data.get("changelog")
    if changelog is not None:
        if not isinstance(changelog, Mapping) or not isinstance(changelog.get("items", []), list):
            raise PayloadError(f"{event}: 'changelog' must be an object with a list of 'items'")
        for item in changelog.get("items", []):
            if not isinstance(item, Mapping) or not isinstance(item.get("field"), str):
                raise PayloadError(f"{event}: each changelog item needs its 'field'")
        items = tuple(changelog.get("items", []))
        raw_id = changelog.get("id")
        changelog_id = str(raw_id) if raw_id is not None else None
    return WebhookNotice(
        event,
        issue_id,
        issue_key,
        account.get("accountId") if account else None,
        timestamp,
        items,
        changelog_id,
    )


# --- reading helpers ----------------------------------------------------------------------------


@dataclass(slots=True)
class _History(History[PriorityChange]):
    """What the changelog and the comments say: replies, statuses, priorities."""

    unknown_priorities: tuple[str, ...] = ()

    @classmethod
    def read(
        cls,
        bundle: IssueBundle,
        config: JiraConfig,
        reporter: Mapping[str, Any] | None,
        created_at: datetime,
        where: str,
    ) -> _History:
        history = cls()
        fields = bundle.issue["fields"]
        issue_id = issue_id_of(bundle.issue)
        reporter_id = reporter.get("accountId") if reporter else None

        def is_agent(author: Mapping[str, Any] | None) -> bool:
            if author is None:
                return False
            account_id = str(author.get("accountId"))
            if account_id in (reporter_id, bundle.bot_account_id):
                return False
            if bundle.agent_ids is None:
                return author.get("accountType") not in NOT_PEOPLE
            return account_id in bundle.agent_ids

        histories = sorted(
            bundle.histories,
            key=lambda h: (
                parse_instant(h.get("created"), f"{where}: changelog", required=True),
                _numeric(h.get("id")),
            ),
        )
        status_items: list[tuple[Mapping[str, Any], Mapping[str, Any], datetime]] = []
        priority_items: list[tuple[Mapping[str, Any], Mapping[str, Any], datetime]] = []
        for entry in histories:
            at = parse_instant(entry.get("created"), f"{where}: changelog {entry.get('id')}")
            assert at is not None
            author = _account(entry.get("author"))
            history.last_actor = _actor(author)
            for item in entry.get("items") or ():
                name = item.get("fieldId") or item.get("field")
                if name == "status":
                    status_items.append((entry, item, at))
                elif name == "priority":
                    priority_items.append((entry, item, at))

        # Statuses: the one the issue was created in, then each change.
        current = fields.get("status")
        initial_name = status_items[0][1].get("fromString") if status_items else _name(current)
        changes = [
            StatusChange(
                f"jira:{issue_id}:created:status",
                created_at,
                _status_by_name(initial_name, bundle, config, current, where),
                None,
            )
        ]
        for entry, item, at in status_items:
            to = _status_by_name(item.get("toString"), bundle, config, current, where)
            changes.append(
                StatusChange(
                    f"jira:changelog:{entry.get('id')}:status",
                    at,
                    to,
                    _actor(_account(entry.get("author"))),
                )
            )
            if to in ("solved", "closed"):
                history.solved_at = at
        history.status_changes = tuple(changes)

        # Priorities: as created, or as last set by someone who is not an agent (the
        # reporter, an app); an agent's change is a reclassification; slabot's is neither.
        requested = (
            priority_items[0][1].get("fromString")
            if priority_items
            else _name(fields.get("priority"))
        )
        reclassifications = []
        unknown: list[str] = []
        for entry, item, at in priority_items:
            author = _account(entry.get("author"))
            account_id = author.get("accountId") if author else None
            if account_id is not None and account_id == bundle.bot_account_id:
                continue
            to_name = item.get("toString")
            if is_agent(author):
                assert author is not None and account_id is not None
                priority = config.slabot_priority(to_name)
                if priority is None and to_name:
                    unknown.append(str(to_name))
                reclassifications.append(
                    PriorityChange(
                        str(entry.get("id")),
                        at,
                        account_id,
                        _actor(author) or account_id,
                        str(to_name or ""),
                        priority,
                    )
                )
            else:
                requested = to_name
        history.requested_priority = config.slabot_priority(requested) if requested else None
        if requested and history.requested_priority is None:
            unknown.append(str(requested))
        history.reclassifications = tuple(reclassifications)
        history.unknown_priorities = tuple(dict.fromkeys(unknown))

        for comment in sorted(
            bundle.comments,
            key=lambda c: (
                parse_instant(c.get("created"), f"{where}: comment", required=True),
                _numeric(c.get("id")),
            ),
        ):
            if not is_public(comment):
                continue
            author = _account(comment.get("author"))
            at = parse_instant(comment.get("created"), f"{where}: comment {comment.get('id')}")
            assert at is not None
            if not is_agent(author):
                if _is_customer(author, bundle.bot_account_id):
                    history.customer_replies.append(at)
                continue
            history.agent_replied(at)
        return history


def _is_customer(author: Mapping[str, Any] | None, bot_account_id: str | None) -> bool:
    """A person who is not an agent: the reporter, a portal customer; not slabot, not an
    app (Automation for Jira comments as an app)."""
    if author is None or author.get("accountType") == "app":
        return False
    return bot_account_id is None or str(author.get("accountId")) != bot_account_id


def is_public(comment: Mapping[str, Any]) -> bool:
    """Whether the customer sees the comment: not JSM-internal, not restricted."""
    if comment.get("jsdPublic") is False:
        return False
    if comment.get("visibility"):
        return False
    for prop in comment.get("properties") or ():
        if isinstance(prop, Mapping) and prop.get("key") == "sd.public.comment":
            value = prop.get("value")
            if isinstance(value, Mapping) and value.get("internal") is True:
                return False
    return True


def issue_id_of(issue: Mapping[str, Any], name: str = "issue id") -> str:
    value = issue.get("id")
    if isinstance(value, bool):
        raise PayloadError(f"{name} {value!r} is not an issue id")
    if isinstance(value, int) and value > 0:
        return str(value)
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return value.strip()  # ASCII digits only ("²".isdigit() holds too)
    raise PayloadError(f"{name} {repr(value)[:60]} is not an issue id")


def routing_attributes(fields: Mapping[str, Any], labels: Any, key: Any) -> dict[str, Any]:
    """What routing rules read about a Jira issue (bot.routing): project key, issue type
    name, component names, labels, and custom fields by id (a select list's option value,
    a multi-select's values, a number as it is). Absent values are left out."""
    components = fields.get("components")
    found: dict[str, Any] = {
        "project": _project_key(fields.get("project"), key),
        "issue_type": _name(fields.get("issuetype")),
        "components": sorted(
            name
            for name in (
                _name(item) for item in (components if isinstance(components, list) else [])
            )
            if name is not None
        ),
        "labels": sorted(labels),
    }
    custom: dict[str, Any] = {}
    for field_id, value in fields.items():
        if not str(field_id).startswith("customfield_") or value is None:
            continue
        plain = _plain_field(value)
        if plain is not None:
            custom[str(field_id)] = plain
    found["fields"] = custom
    return {name: value for name, value in found.items() if value}


def _plain_field(value: Any) -> Any:
    """A field's value as routing compares it: text or number as is, an option by its
    value, a list by its items' values; None for other shapes (users, rich text)."""
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return value
    if isinstance(value, Mapping):
        option = value.get("value")
        return option if isinstance(option, str) else None
    if isinstance(value, list):
        items = [_plain_field(item) for item in value]
        return [item for item in items if item is not None] or None
    return None


def _current_status(value: Any, config: JiraConfig, where: str) -> str:
    if not isinstance(value, Mapping) or not value.get("name"):
        raise PayloadError(f"{where}: status must be an object with its name")
    category = value.get("statusCategory")
    key = category.get("key") if isinstance(category, Mapping) else None
    status = config.status(str(value["name"]), key)
    if status is None:
        raise PayloadError(
            f"{where}: status {value['name']!r} has no category and is not in jira.statuses"
        )
    return status


def _status_by_name(
    name: Any, bundle: IssueBundle, config: JiraConfig, current: Any, where: str
) -> str:
    if isinstance(current, Mapping) and name == current.get("name"):
        return _current_status(current, config, where)
    text = str(name or "")
    status = config.status(text, bundle.status_categories.get(text.strip().lower()))
    if status is None:
        # A status the issue left, whose category is unknown: it was a working status.
        return "open"
    return status


def _account(value: Any) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) and value.get("accountId") else None


def _actor(account: Mapping[str, Any] | None) -> str | None:
    if account is None:
        return None
    name = account.get("displayName")
    account_id = account.get("accountId")
    return f"{name} (jira {account_id})" if name else f"jira {account_id}"


def _assignee_email(value: Any) -> str | None:
    """The assignee's e-mail address, when Jira shows it (the user's profile visibility
    may hide ``emailAddress``): None otherwise."""
    if not isinstance(value, Mapping):
        return None
    email = value.get("emailAddress")
    if isinstance(email, str) and "@" in email:
        return email.strip().lower()
    return None


def _display_name(value: Any) -> str | None:
    """A user's ``displayName`` (the reporter, the assignee); None for nobody."""
    if not isinstance(value, Mapping):
        return None
    return mapping.one_line(value.get("displayName"))


def _organizations(fields: Mapping[str, Any], config: JiraConfig) -> str | None:
    """The names in the JSM Organizations field (``jira.organizations_field``), joined
    (``Acme, Globex``); None when it is not configured or empty. Its value is a list of
    ``{"id": "1", "name": "Acme", "_links": ...}``."""
    if config.organizations_field is None:
        return None
    value = fields.get(config.organizations_field)
    items = value if isinstance(value, list) else [value] if value is not None else []
    names = [
        name
        for item in items
        if isinstance(item, Mapping) and (name := mapping.one_line(item.get("name")))
    ]
    return ", ".join(names) or None


def _project_key(value: Any, issue_key: Any) -> str | None:
    if isinstance(value, Mapping) and isinstance(value.get("key"), str) and value["key"]:
        return str(value["key"])
    if isinstance(issue_key, str) and "-" in issue_key:
        return issue_key.rsplit("-", 1)[0]
    return None


def _browse_url(site: str | None, key: Any) -> str | None:
    if not site or not isinstance(key, str) or not key:
        return None
    return f"{site.rstrip('/')}/browse/{key}"


def _name(value: Any) -> str | None:
    if isinstance(value, Mapping):
        name = value.get("name")
        return str(name) if name else None
    return None


def _numeric(value: Any) -> int:
    text = str(value or "0")
    return int(text) if text.isdigit() else 0


def _text(value: Any) -> str | None:
    """A field's value as text: an option, a user or a component by its value, name,
    display name or key; a list by its first item."""
    if isinstance(value, Mapping):
        for key in ("value", "name", "displayName", "key"):
            if value.get(key):
                return _text(value[key])
        return None
    if isinstance(value, list):
        return _text(value[0]) if value else None
    return plain_text(value)


def _read_field(
    name: str, config: JiraConfig, fields: Mapping[str, Any], labels: Iterable[str]
) -> str | None:
    def raw(source: Any) -> Any:
        kind = source.source
        if kind == "field":
            return fields.get(source.id)
        if kind == "label":
            found = sorted(label for label in labels if label.startswith(source.prefix))
            return found[0][len(source.prefix) :] if found else None
        if kind == "reporter_time_zone":
            reporter = fields.get("reporter")
            return reporter.get("timeZone") if isinstance(reporter, Mapping) else None
        return None

    return mapping.first_value(config.sources(name), raw, _text)
