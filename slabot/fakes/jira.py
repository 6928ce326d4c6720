"""A stateful fake Jira Cloud REST API on an ephemeral loopback port, for the real python-jira.

It keeps issues, their changelogs and comments, users, groups and project roles; serves
``serverInfo`` (``deploymentType: Cloud``), ``myself``, ``mypermissions`` (grants all but
``denied``), the field, priority and status lists, the current search
``/rest/api/{2,3}/search/jql`` with ``nextPageToken`` pages (the removed ``/search`` answers
410 Gone), issue reads (``expand=changelog``), the changelog and comment pages, issue edits
and comments. Edits follow Jira's rules where slabot depends on them: ``update.labels``
add/remove change only those labels while ``fields.labels`` replaces them all, an unknown
priority or a field not on the screen is a 400 with Jira's error shape, every change appends
a changelog entry by its author and moves ``updated``.

People act through ``person_update`` and ``person_comment``; each returns the webhook
delivery Jira would send, signed as Jira signs (``X-Hub-Signature: sha256=<hex HMAC>``),
and slabot's own edits queue theirs in ``webhook_outbox``. Faults can be injected
(``fail_next``: 429/503 with Retry-After, 5xx, a stall longer than the client's time-out)
and every call is counted.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import itertools
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from slabot.fakes.base import Call, Fault, HelpdeskFake
from slabot.fakes.chaos import Chaos

BOT = "5f0c0a5e1b2c3d0070a1b0b0"
PRIORITIES = ("Highest", "High", "Medium", "Low", "Lowest")
STATUSES = {
    "Open": "new",
    "To Do": "new",
    "Waiting for support": "indeterminate",
    "In Progress": "indeterminate",
    "Waiting for customer": "indeterminate",
    "Resolved": "done",
    "Closed": "done",
    "Done": "done",
}
SYSTEM_FIELDS = (
    "summary",
    "priority",
    "status",
    "labels",
    "duedate",
    "reporter",
    "assignee",
    "updated",
)


def jira_time(instant: datetime) -> str:
    """Jira's ``2026-11-16T17:00:00.000+0000``."""
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


@dataclass
class FakeJira(HelpdeskFake):
    """The fake's state; ``start()`` serves it. Times come from ``now`` (advance it)."""

    OFFLINE_URL: ClassVar[str] = "https://fake.atlassian.net"
    CONTENT_TYPE: ClassVar[str] = "application/json;charset=UTF-8"
    AUTH_SCHEMES: ClassVar[tuple[str, ...]] = ("Basic ",)
    UNAUTHENTICATED: ClassVar[dict[str, Any]] = {"errorMessages": ["You are not authenticated."]}
    NOT_FOUND: ClassVar[dict[str, Any]] = {
        "errorMessages": ["Issue does not exist or you do not have permission to see it."],
        "errors": {},
    }
    RATE_LIMITED: ClassVar[dict[str, Any]] = {"errorMessages": ["Rate limit exceeded"]}
    UNAVAILABLE: ClassVar[dict[str, Any]] = {"errorMessages": ["Service unavailable"]}
    INTERNAL_ERROR: ClassVar[dict[str, Any]] = {"errorMessages": ["Internal server error"]}

    now: datetime = field(default_factory=lambda: datetime(2026, 11, 16, 17, 0, tzinfo=UTC))
    webhook_secret: str = "fake-jira-secret"
    bot_time_zone: str = "Europe/Berlin"
    search_lag: timedelta = timedelta(0)
    """Issues updated less than this before ``now`` are not found yet (eventual consistency)."""
    custom_fields: dict[str, str] = field(default_factory=dict)
    """Custom field id -> name; only these (and the system fields) can be edited."""
    issues: dict[str, dict[str, Any]] = field(default_factory=dict)
    histories: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    comments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, set[str]] = field(default_factory=dict)
    emails: dict[str, str] = field(default_factory=dict)
    """E-mail address (lower case) -> account id, for ``GET user/search?query=``."""
    roles: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    """Project key -> role name -> actors, as ``GET project/{key}/role/{id}`` lists them."""
    denied: dict[str, set[str]] = field(default_factory=dict)
    """Project key -> permission keys slabot's account lacks there (``mypermissions``);
    every other permission is granted."""
    calls: list[Call] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    webhook_outbox: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    """Deliveries Jira sends for slabot's own edits and comments (its echoes)."""
    chaos: Chaos | None = None
    """Random faults on a share of the calls (see ``chaos.py``); None: none."""

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._ids = itertools.count(10_000)
        self.add_user(BOT, "slabot", time_zone=self.bot_time_zone)

    # --- test controls ---

    def add_user(
        self,
        account_id: str,
        name: str,
        *,
        account_type: str = "atlassian",
        time_zone: str = "UTC",
        groups: tuple[str, ...] = (),
        email: str | None = None,
    ) -> dict[str, Any]:
        """A user; ``email`` is shown as ``emailAddress`` (Jira leaves it out when the
        user's profile hides it, the default for most sites)."""
        if email is not None:
            self.emails[email.lower()] = account_id  # searchable even when not shown
        user: dict[str, Any] = {
            "accountId": account_id,
            "displayName": name,
            "accountType": account_type,
            "active": True,
            "timeZone": time_zone,
        }
        if email is not None:
            user["emailAddress"] = email
        self.users[account_id] = user
        for group in groups:
            self.groups.setdefault(group, set()).add(account_id)
        return user

    def add_issue(
        self,
        number: int,
        *,
        reporter: str,
        project: str = "SUP",
        created_at: datetime | None = None,
        status: str = "Waiting for support",
        priority: str | None = "Medium",
        labels: list[str] | None = None,
        fields: dict[str, Any] | None = None,
        assignee: str | None = None,
        summary: str | None = None,
    ) -> tuple[dict[str, str], bytes]:
        """An issue as its reporter creates it (``assignee``: an account id, or unassigned;
        ``summary``: default ``issue <number>``); returns the signed ``jira:issue_created``
        delivery."""
        with self._lock:
            at = created_at or self.now
            issue_id = str(10_000 + number)
            issue = {
                "id": issue_id,
                "key": f"{project}-{number}",
                "self": f"{self._base()}/rest/api/3/issue/{issue_id}",
                "fields": {
                    "summary": f"issue {number}" if summary is None else summary,
                    "project": {"key": project, "id": "10000", "name": project},
                    "issuetype": {"name": "Support"},
                    "created": jira_time(at),
                    "updated": jira_time(at),
                    "status": self._status(status),
                    "priority": self._priority(priority) if priority else None,
                    "labels": list(labels or []),
                    "duedate": None,
                    "resolutiondate": None,
                    "reporter": copy.deepcopy(self.users[reporter]),
                    "assignee": copy.deepcopy(self.users[assignee]) if assignee else None,
                    **{cf: None for cf in self.custom_fields},
                    **(fields or {}),
                },
            }
            self.issues[issue_id] = issue
            self.histories[issue_id] = []
            self.comments[issue_id] = []
            return self.webhook(self._event("jira:issue_created", issue, reporter, at))

    def person_update(
        self, number: int, account_id: str, *, at: datetime | None = None, **changes: Any
    ) -> tuple[dict[str, str], bytes]:
        """A person edits the issue (``priority="Highest"``, ``status="Resolved"``, any
        field id); returns the signed ``jira:issue_updated`` delivery."""
        with self._lock:
            issue = self.issues[str(10_000 + number)]
            when = at or self.now
            items = self._apply(issue, changes)
            history = self._history(issue, account_id, when, items)
            body = self._event("jira:issue_updated", issue, account_id, when)
            body["changelog"] = {"id": history["id"], "items": items}
            return self.webhook(body)

    def person_comment(
        self,
        number: int,
        account_id: str,
        text: str = "on it",
        *,
        at: datetime | None = None,
        public: bool = True,
    ) -> tuple[dict[str, str], bytes]:
        """A person comments (``public=False``: a JSM internal note); returns the signed
        ``comment_created`` delivery."""
        with self._lock:
            issue = self.issues[str(10_000 + number)]
            when = at or self.now
            comment = self._comment(issue, account_id, text, when, public)
            issue["fields"]["updated"] = jira_time(when)
            body = self._event("comment_created", issue, account_id, when)
            body["comment"] = comment
            return self.webhook(body)

    def webhook(
        self,
        body: dict[str, Any] | bytes,
        *,
        secret: str | None = None,
        identifier: str | None = None,
    ) -> tuple[dict[str, str], bytes]:
        """A delivery signed as Jira signs it: headers and raw body."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        key = (secret or self.webhook_secret).encode()
        digest = hmac.new(key, raw, hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/json",
            "X-Atlassian-Webhook-Identifier": identifier or str(uuid.uuid4()),
            "X-Atlassian-Webhook-Retry": "0",
            "X-Hub-Signature": f"sha256={digest}",
        }
        return headers, raw

    def shown(self, number: int) -> dict[str, Any]:
        """What an agent sees: priority, labels, due date and custom fields."""
        with self._lock:
            fields = self.issues[str(10_000 + number)]["fields"]
            return {
                "priority": (fields.get("priority") or {}).get("name"),
                "labels": sorted(fields["labels"]),
                "duedate": fields.get("duedate"),
                **{cf: fields.get(cf) for cf in self.custom_fields},
            }

    def issue_comments(self, number: int) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self.comments[str(10_000 + number)])

    # --- the API ---

    def _route(
        self, method: str, path: str, query: dict[str, list[str]], body: Any
    ) -> tuple[int, Any]:
        match = re.match(r"^/rest/api/([23])/(.*)$", path)
        if match is None:
            return 404, {"errorMessages": [f"no such resource {path}"]}
        segments = match.group(2).strip("/").split("/")
        if method == "GET":
            match segments:
                case ["serverInfo"]:
                    return 200, {
                        "baseUrl": self._base(),
                        "displayUrl": self._base(),
                        "version": "1001.0.0-SNAPSHOT",
                        "versionNumbers": [1001, 0, 0],
                        "deploymentType": "Cloud",
                        "buildNumber": 100282,
                        "serverTitle": "Jira",
                    }
                case ["myself"]:
                    return 200, self.users[BOT]
                case ["field"]:
                    return 200, self._fields()
                case ["mypermissions"]:
                    return self._my_permissions(query)
                case ["priority"]:
                    return 200, [
                        {"id": str(i + 1), "name": name} for i, name in enumerate(PRIORITIES)
                    ]
                case ["status"]:
                    return 200, [self._status(name) for name in STATUSES]
                case ["search"]:
                    return 410, {"errorMessages": ["The requested API has been removed."]}
                case ["search", "jql"]:
                    return self._search(query)
                case ["issue", issue_id]:
                    return 200, self._issue(issue_id, "changelog" in query.get("expand", [""])[0])
                case ["issue", issue_id, "changelog"]:
                    return 200, self._changelog_page(issue_id, query)
                case ["issue", issue_id, "comment"]:
                    comments = self.comments[self._find(issue_id)]
                    start = int(query.get("startAt", ["0"])[0])
                    size = int(query.get("maxResults", ["5000"])[0])
                    return 200, {
                        "startAt": start,
                        "maxResults": size,
                        "total": len(comments),
                        "comments": copy.deepcopy(comments[start : start + size]),
                    }
                case ["user", "search"]:
                    # Jira Cloud matches the address even when the profile hides it.
                    wanted = (query.get("query") or [""])[0].strip().lower()
                    found = self.emails.get(wanted)
                    if found is None:
                        return 200, []
                    user = copy.deepcopy(self.users[found])
                    user["self"] = f"{self._base()}/rest/api/3/user?accountId={found}"
                    return 200, [user]
                case ["user", "groups"]:
                    account = query["accountId"][0]
                    return 200, [
                        {"name": name, "groupId": f"g-{name}"}
                        for name, members in sorted(self.groups.items())
                        if account in members
                    ]
                case ["project", key, "role"]:
                    roles = self.roles.get(key, {})
                    return 200, {
                        name: f"{self._base()}/rest/api/3/project/{key}/role/{10_100 + i}"
                        for i, name in enumerate(roles)
                    }
                case ["project", key, "role", role_id]:
                    listed = list(self.roles[key].items())
                    name, actors = listed[int(role_id) - 10_100]
                    return 200, {"name": name, "id": int(role_id), "actors": actors}
                case ["search", *_] | ["issue", *_]:
                    pass
        if method == "PUT" and len(segments) == 2 and segments[0] == "issue":
            return self._edit(self._find(segments[1]), body or {})
        if method == "POST" and len(segments) == 3 and segments[::2] == ["issue", "comment"]:
            issue = self.issues[self._find(segments[1])]
            internal = any(
                p.get("key") == "sd.public.comment" and (p.get("value") or {}).get("internal")
                for p in body.get("properties") or []
            )
            self.now += timedelta(seconds=1)
            comment = self._comment(issue, BOT, body["body"], self.now, not internal)
            issue["fields"]["updated"] = jira_time(self.now)
            echo = self._event("comment_created", issue, BOT, self.now)
            echo["comment"] = comment
            self.webhook_outbox.append(self.webhook(echo))
            return 201, comment
        return 404, {"errorMessages": [f"{method} {path} is not served by the fake"]}

    def _my_permissions(self, query: dict[str, list[str]]) -> tuple[int, Any]:
        # Jira Cloud requires ``permissions`` and answers 400 without it.
        wanted = [p for p in query.get("permissions", [""])[0].split(",") if p]
        if not wanted:
            return 400, {"errorMessages": ["The 'permissions' query parameter is required."]}
        project = query.get("projectKey", [""])[0]
        denied = self.denied.get(project, set())
        return 200, {
            "permissions": {
                key: {
                    "key": key,
                    "name": key.replace("_", " ").title(),
                    "type": "PROJECT",
                    "havePermission": key not in denied,
                }
                for key in wanted
            }
        }

    def _fields(self) -> list[dict[str, Any]]:
        system = [
            {"id": name, "key": name, "name": name.title(), "custom": False, "clauseNames": [name]}
            for name in SYSTEM_FIELDS
        ]
        custom = [
            {
                "id": cf,
                "key": cf,
                "name": name,
                "custom": True,
                "clauseNames": [f"cf[{cf.removeprefix('customfield_')}]", name],
            }
            for cf, name in self.custom_fields.items()
        ]
        return system + custom

    def _find(self, id_or_key: str) -> str:
        if id_or_key in self.issues:
            return id_or_key
        for issue_id, issue in self.issues.items():
            if issue["key"] == id_or_key:
                return issue_id
        raise KeyError(id_or_key)

    def _issue(self, id_or_key: str, changelog: bool) -> dict[str, Any]:
        issue_id = self._find(id_or_key)
        data = copy.deepcopy(self.issues[issue_id])
        comments = self.comments[issue_id]
        data["fields"]["comment"] = {
            "comments": copy.deepcopy(comments),
            "maxResults": len(comments),
            "total": len(comments),
            "startAt": 0,
        }
        if changelog:
            histories = self.histories[issue_id]
            data["changelog"] = {
                "startAt": 0,
                "maxResults": 100,
                "total": len(histories),
                "histories": copy.deepcopy(histories[:100]),
            }
        return data

    def _changelog_page(self, id_or_key: str, query: dict[str, list[str]]) -> dict[str, Any]:
        histories = self.histories[self._find(id_or_key)]
        start = int(query.get("startAt", ["0"])[0])
        size = int(query.get("maxResults", ["100"])[0])
        values = histories[start : start + size]
        return {
            "startAt": start,
            "maxResults": size,
            "total": len(histories),
            "isLast": start + size >= len(histories),
            "values": copy.deepcopy(values),
        }

    def _search(self, query: dict[str, list[str]]) -> tuple[int, Any]:
        jql = query.get("jql", [""])[0]
        projects = re.search(r"project in \(([^)]*)\)", jql)
        since = re.search(r'updated >= "([^"]+)"', jql)
        wanted = {p.strip() for p in projects.group(1).split(",")} if projects else None
        floor = None
        if since:
            local = datetime.strptime(since.group(1), "%Y-%m-%d %H:%M")
            floor = local.replace(tzinfo=ZoneInfo(self.bot_time_zone))
        visible_until = self.now - self.search_lag
        found = []
        for issue_id in self.issues:
            issue = self._issue(issue_id, "changelog" in query.get("expand", [""])[0])
            updated = datetime.fromisoformat(issue["fields"]["updated"])
            if wanted is not None and issue["fields"]["project"]["key"] not in wanted:
                continue
            if floor is not None and updated < floor:
                continue
            if updated > visible_until:
                continue
            found.append((updated, int(issue_id), issue))
        found.sort(key=lambda row: (row[0], row[1]))
        token = query.get("nextPageToken", [None])[0]
        start = int(base64.urlsafe_b64decode(token).decode()) if token else 0
        size = int(query.get("maxResults", ["50"])[0])
        page = [issue for _, _, issue in found[start : start + size]]
        answer: dict[str, Any] = {"issues": page}
        if start + size < len(found):
            answer["nextPageToken"] = base64.urlsafe_b64encode(str(start + size).encode()).decode()
        return 200, answer

    def _edit(self, issue_id: str, body: dict[str, Any]) -> tuple[int, Any]:
        issue = self.issues[issue_id]
        fields = dict(body.get("fields") or {})
        errors = {}
        for name in fields:
            if name not in SYSTEM_FIELDS and name not in self.custom_fields:
                errors[name] = (
                    f"Field '{name}' cannot be set. It is not on the appropriate screen, or "
                    "unknown."
                )
        priority = fields.get("priority")
        if priority is not None and (priority or {}).get("name") not in PRIORITIES:
            errors["priority"] = "Specify a valid value for priority"
        if "assignee" in fields:
            wanted = (fields["assignee"] or {}).get("accountId")
            if wanted is not None and wanted not in self.users:
                errors["assignee"] = f"User '{wanted}' cannot be assigned issues."
        due = fields.get("duedate")
        if due is not None and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(due)):
            errors["duedate"] = "Error parsing date string: " + str(due)
        for operation in (body.get("update") or {}).get("labels") or []:
            if not isinstance(operation, dict) or not set(operation) <= {"add", "remove", "set"}:
                errors["labels"] = "Operation value must be an object with add, remove or set"
        if errors:
            return 400, {"errorMessages": [], "errors": errors}
        changes: dict[str, Any] = {}
        if "priority" in fields:
            changes["priority"] = (fields.pop("priority") or {}).get("name")
        if "assignee" in fields:
            wanted = (fields.pop("assignee") or {}).get("accountId")
            changes["assignee"] = copy.deepcopy(self.users[wanted]) if wanted else None
        changes.update(fields)
        labels = list(issue["fields"]["labels"])
        for operation in (body.get("update") or {}).get("labels") or []:
            if "add" in operation and operation["add"] not in labels:
                labels.append(operation["add"])
            if "remove" in operation and operation["remove"] in labels:
                labels.remove(operation["remove"])
            if "set" in operation:
                labels = list(operation["set"])
        if sorted(labels) != sorted(issue["fields"]["labels"]):
            changes["labels"] = labels
        self.now += timedelta(seconds=1)
        items = self._apply(issue, changes)
        if items:
            history = self._history(issue, BOT, self.now, items)
            echo = self._event("jira:issue_updated", issue, BOT, self.now)
            echo["changelog"] = {"id": history["id"], "items": items}
            self.webhook_outbox.append(self.webhook(echo))
        return 204, None

    def _apply(self, issue: dict[str, Any], changes: dict[str, Any]) -> list[dict[str, Any]]:
        """Change fields; the changelog items for what moved."""
        fields = issue["fields"]
        items = []
        for name, value in changes.items():
            if name == "priority":
                old = (fields.get("priority") or {}).get("name")
                if old == value:
                    continue
                fields["priority"] = self._priority(value) if value else None
                items.append(_item("priority", old, value))
            elif name == "status":
                old = fields["status"]["name"]
                if old == value:
                    continue
                fields["status"] = self._status(value)
                done = STATUSES[value] == "done"
                fields["resolutiondate"] = jira_time(self.now) if done else None
                items.append(_item("status", old, value))
            elif name == "assignee":
                old = (fields.get("assignee") or {}).get("accountId")
                new = (value or {}).get("accountId")
                if old == new:
                    continue
                fields["assignee"] = value
                items.append(_item("assignee", old, new))
            elif name == "labels":
                old_labels = " ".join(sorted(fields["labels"]))
                fields["labels"] = list(value)
                items.append(_item("labels", old_labels, " ".join(sorted(value))))
            else:
                old = fields.get(name)
                if old == value:
                    continue
                fields[name] = value
                items.append(_item(name, _shown(old), _shown(value)))
        return items

    def _history(
        self, issue: dict[str, Any], account_id: str, at: datetime, items: list[dict[str, Any]]
    ) -> dict[str, Any]:
        history = {
            "id": str(next(self._ids)),
            "author": copy.deepcopy(self.users[account_id]),
            "created": jira_time(at),
            "items": items,
        }
        self.histories[issue["id"]].append(history)
        issue["fields"]["updated"] = jira_time(at)
        return history

    def _comment(
        self, issue: dict[str, Any], account_id: str, body: Any, at: datetime, public: bool
    ) -> dict[str, Any]:
        comment_id = str(next(self._ids))
        comment = {
            "self": f"{self._base()}/rest/api/3/issue/{issue['id']}/comment/{comment_id}",
            "id": comment_id,
            "author": copy.deepcopy(self.users[account_id]),
            "body": body,
            "updateAuthor": copy.deepcopy(self.users[account_id]),
            "created": jira_time(at),
            "updated": jira_time(at),
            "jsdPublic": public,
        }
        self.comments[issue["id"]].append(comment)
        return comment

    def _event(
        self, event: str, issue: dict[str, Any], account_id: str, at: datetime
    ) -> dict[str, Any]:
        kinds = {
            "jira:issue_created": "issue_created",
            "jira:issue_updated": "issue_generic",
            "comment_created": "issue_commented",
        }
        return {
            "timestamp": int(at.timestamp() * 1000),
            "webhookEvent": event,
            "issue_event_type_name": kinds.get(event, "issue_generic"),
            "user": copy.deepcopy(self.users[account_id]),
            "issue": copy.deepcopy(issue),
        }

    def _status(self, name: str) -> dict[str, Any]:
        category = STATUSES[name]
        return {
            "name": name,
            "id": str(list(STATUSES).index(name) + 1),
            "statusCategory": {"key": category, "name": category.title()},
        }

    def _priority(self, name: str) -> dict[str, Any]:
        return {"name": name, "id": str(PRIORITIES.index(name) + 1)}


def _item(name: str, old: str | None, new: str | None) -> dict[str, Any]:
    return {
        "field": name,
        "fieldtype": "custom" if name.startswith("customfield_") else "jira",
        "fieldId": name,
        "from": None,
        "fromString": old,
        "to": None,
        "toString": new,
    }


def _shown(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dict):
        return str(value.get("value") or value.get("name"))
    return str(value)
