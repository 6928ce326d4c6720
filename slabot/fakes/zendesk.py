"""A stateful fake Zendesk Support API on an ephemeral loopback port, for the real zenpy.

It keeps tickets, users, organizations, groups and audits; serves the ticket, audit, user,
organization and group reads, ``users/me``, ``users/show_many``, the custom field
definitions (``ticket_fields/{id}``, ``organization_fields``, ``user_fields``), the
cursor-based incremental ticket export (its ``after_url`` points back at this server; 403
unless slabot's user is an admin, as Zendesk answers it), ticket updates and ``update_many``
with job statuses. Updates follow Zendesk's rules where slabot depends on them:
``additional_tags``/``remove_tags`` change only those tags while ``tags`` replaces them all,
an invalid priority is a 422 with Zendesk's error shape, every change appends an audit.
Faults can be injected (``fail_next``: 429 with Retry-After, 5xx, a stall longer than the
client's time-out) and every call is counted. ``webhook`` builds a delivery signed the way
Zendesk signs (base64 HMAC-SHA256 over timestamp + body).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import itertools
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from slabot.fakes.base import Call, Fault, HelpdeskFake
from slabot.fakes.chaos import Chaos

PRIORITIES = (None, "urgent", "high", "normal", "low")
STATUSES = ("new", "open", "pending", "hold", "solved", "closed")


def iso(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class FakeZendesk(HelpdeskFake):
    """The fake's state; ``start()`` serves it. Times come from ``now`` (advance it)."""

    OFFLINE_URL: ClassVar[str] = "https://fake.zendesk.com"
    CONTENT_TYPE: ClassVar[str] = "application/json; charset=utf-8"
    AUTH_SCHEMES: ClassVar[tuple[str, ...]] = ("Basic ", "Bearer ")
    UNAUTHENTICATED: ClassVar[dict[str, Any]] = {"error": "Couldn't authenticate you"}
    NOT_FOUND: ClassVar[dict[str, Any]] = {"error": "RecordNotFound", "description": "Not found"}
    RATE_LIMITED: ClassVar[dict[str, Any]] = {"error": "TooManyRequests"}
    UNAVAILABLE: ClassVar[dict[str, Any]] = {"error": "ServiceUnavailable"}
    INTERNAL_ERROR: ClassVar[dict[str, Any]] = {"error": "InternalError"}

    now: datetime = field(default_factory=lambda: datetime(2026, 11, 16, 17, 0, tzinfo=UTC))
    bot_user_id: int = 900
    page_size: int = 1000
    job_polls_before_done: int = 1
    tickets: dict[int, dict[str, Any]] = field(default_factory=dict)
    users: dict[int, dict[str, Any]] = field(default_factory=dict)
    organizations: dict[int, dict[str, Any]] = field(default_factory=dict)
    groups: dict[int, dict[str, Any]] = field(default_factory=dict)
    audits: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    webhook_secret: str = "fake-webhook-secret"
    webhook_outbox: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    """Deliveries a trigger would send after each update (see ``trigger_on_update``)."""
    trigger_on_update: bool = False
    ticket_fields: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Custom ticket fields by id (``ticket_fields/{id}``); see ``add_field``."""
    organization_fields: list[dict[str, Any]] = field(default_factory=list)
    user_fields: list[dict[str, Any]] = field(default_factory=list)
    chaos: Chaos | None = None
    """Random faults on a share of the calls (see ``chaos.py``); None: none."""

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._ids = itertools.count(10_000)
        self.users[self.bot_user_id] = {
            "id": self.bot_user_id,
            "name": "slabot",
            "email": "slabot@example.com",
            # The incremental export wants an admin (Zendesk's "Allowed for: Admins"): an
            # agent's token is answered 403 there, as Zendesk answers it.
            "role": "admin",
        }

    # --- test controls ---

    def slow_next(
        self, count: int, seconds: float, *, path_contains: str = "", method: str = ""
    ) -> None:
        """The next ``count`` matching requests are answered as usual, ``seconds`` late (the
        answer is the state when they arrived)."""
        with self._lock:
            for _ in range(count):
                self.faults.append(Fault(0, None, seconds, path_contains, method))

    def add_field(self, kind: str, key: int | str, field_type: str = "text") -> None:
        """A custom field: ``ticket`` (by numeric id), ``organization`` or ``user`` (by key)."""
        with self._lock:
            if kind == "ticket":
                self.ticket_fields[int(key)] = {
                    "id": int(key),
                    "type": field_type,
                    "title": f"field {key}",
                    "active": True,
                }
            else:
                fields = self.organization_fields if kind == "organization" else self.user_fields
                fields.append({"id": len(fields) + 1, "key": str(key), "type": field_type})

    def add_user(self, user_id: int, role: str = "end-user", **fields: Any) -> dict[str, Any]:
        user = {"id": user_id, "name": f"user {user_id}", "role": role, **fields}
        self.users[user_id] = user
        return user

    def add_organization(self, organization_id: int, **fields: Any) -> dict[str, Any]:
        organization = {"id": organization_id, "name": f"org {organization_id}", **fields}
        self.organizations[organization_id] = organization
        return organization

    def add_group(self, group_id: int, name: str) -> dict[str, Any]:
        group = {"id": group_id, "name": name, "default": False, "deleted": False}
        self.groups[group_id] = group
        return group

    def add_ticket(
        self,
        ticket_id: int,
        *,
        requester_id: int,
        created_at: datetime | None = None,
        status: str = "new",
        priority: str | None = "normal",
        tags: list[str] | None = None,
        custom_fields: dict[int, Any] | None = None,
        channel: str = "web",
        organization_id: int | None = None,
        assignee_id: int | None = None,
        group_id: int | None = None,
        subject: str | None = None,
        brand_id: int | None = None,
    ) -> dict[str, Any]:
        """A ticket as a customer creates it, with its creating audit (``subject``: what
        the customer typed; default ``ticket <id>``)."""
        with self._lock:
            at = created_at or self.now
            ticket = {
                "id": ticket_id,
                "url": f"{self._base()}/api/v2/tickets/{ticket_id}.json",
                "subject": f"ticket {ticket_id}" if subject is None else subject,
                "created_at": iso(at),
                "updated_at": iso(at),
                "status": status,
                "priority": priority,
                "type": None,
                "tags": list(tags or []),
                "custom_fields": [
                    {"id": key, "value": value} for key, value in (custom_fields or {}).items()
                ],
                "via": {"channel": channel, "source": {"from": {}, "to": {}, "rel": None}},
                "requester_id": requester_id,
                "submitter_id": requester_id,
                "organization_id": organization_id,
                "assignee_id": assignee_id,
                "group_id": group_id,
                "brand_id": brand_id,
            }
            self.tickets[ticket_id] = ticket
            events = [
                {
                    "id": next(self._ids),
                    "type": "Comment",
                    "author_id": requester_id,
                    "public": True,
                    "body": "help",
                },
                {"id": next(self._ids), "type": "Create", "field_name": "status", "value": status},
                {
                    "id": next(self._ids),
                    "type": "Create",
                    "field_name": "priority",
                    "value": priority,
                },
            ]
            self._audit(ticket_id, requester_id, at, events, channel)
            return ticket

    def agent_update(
        self,
        ticket_id: int,
        author_id: int,
        *,
        at: datetime | None = None,
        public_reply: str | None = None,
        **changes: Any,
    ) -> None:
        """A person changes the ticket in Zendesk (status, priority...), maybe replying."""
        with self._lock:
            when = at or self.now
            events = []
            if public_reply is not None:
                events.append(
                    {
                        "id": next(self._ids),
                        "type": "Comment",
                        "author_id": author_id,
                        "public": True,
                        "body": public_reply,
                    }
                )
            events.extend(self._apply(self.tickets[ticket_id], changes))
            self.tickets[ticket_id]["updated_at"] = iso(when)
            self._audit(ticket_id, author_id, when, events, "web")

    def webhook(
        self,
        body: dict[str, Any] | bytes,
        *,
        secret: str | None = None,
        timestamp: str | None = None,
        invocation_id: str | None = None,
    ) -> tuple[dict[str, str], bytes]:
        """A delivery signed as Zendesk signs it: headers and raw body."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        stamp = timestamp or iso(datetime.now(UTC))
        key = (secret or self.webhook_secret).encode()
        signature = base64.b64encode(hmac.new(key, stamp.encode() + raw, hashlib.sha256).digest())
        headers = {
            "Content-Type": "application/json",
            "X-Zendesk-Webhook-Id": "01HWEBHOOK",
            "X-Zendesk-Webhook-Invocation-Id": invocation_id or str(uuid.uuid4().int)[:12],
            "X-Zendesk-Webhook-Signature": signature.decode(),
            "X-Zendesk-Webhook-Signature-Timestamp": stamp,
        }
        return headers, raw

    def shown(self, ticket_id: int) -> dict[str, Any]:
        """What an agent sees: priority, tags and custom fields."""
        with self._lock:
            ticket = self.tickets[ticket_id]
            return {
                "priority": ticket["priority"],
                "tags": sorted(ticket["tags"]),
                "fields": {f["id"]: f["value"] for f in ticket["custom_fields"]},
            }

    # --- the API ---

    def _route(
        self, method: str, path: str, query: dict[str, list[str]], body: Any
    ) -> tuple[int, Any]:
        segments = path.removeprefix("/api/v2/").removesuffix(".json").split("/")
        if method == "GET":
            match segments:
                case ["users", "me"]:
                    return 200, {"user": self.users[self.bot_user_id]}
                case ["users", "search"]:
                    return 200, self._search_users(query)
                case ["users", "show_many"]:
                    ids = [int(i) for i in query.get("ids", [""])[0].split(",") if i]
                    return 200, {
                        "users": [self.users[i] for i in ids if i in self.users],
                        "next_page": None,
                        "previous_page": None,
                        "count": len(ids),
                    }
                case ["users", user_id]:
                    return 200, {"user": self.users[int(user_id)]}
                case ["groups"]:
                    groups = [self.groups[i] for i in sorted(self.groups)]
                    return 200, {
                        "groups": groups,
                        "next_page": None,
                        "previous_page": None,
                        "count": len(groups),
                    }
                case ["organizations", organization_id]:
                    return 200, {"organization": self.organizations[int(organization_id)]}
                case ["tickets", ticket_id]:
                    return 200, {"ticket": self.tickets[int(ticket_id)]}
                case ["tickets", ticket_id, "audits"]:
                    audits = self.audits[int(ticket_id)]
                    return 200, {
                        "audits": audits,
                        "meta": {"has_more": False, "after_cursor": None, "before_cursor": None},
                        "links": {"next": None, "prev": None},
                    }
                case ["incremental", "tickets", "cursor"]:
                    if self.users[self.bot_user_id].get("role") != "admin":
                        return 403, {
                            "error": {
                                "title": "Forbidden",
                                "message": "You do not have access to this page. Please "
                                "contact the account owner of this help desk for further help.",
                            }
                        }
                    return 200, self._export(query)
                case ["ticket_fields", field_id]:
                    return 200, {"ticket_field": self.ticket_fields[int(field_id)]}
                case ["organization_fields"]:
                    return 200, self._listing("organization_fields", self.organization_fields)
                case ["user_fields"]:
                    return 200, self._listing("user_fields", self.user_fields)
                case ["job_statuses", job_id]:
                    return 200, {"job_status": self._poll_job(job_id)}
        if method == "PUT":
            match segments:
                case ["tickets", "update_many"]:
                    return self._update_many(body)
                case ["tickets", ticket_id]:
                    return self._update_one(int(ticket_id), body["ticket"])
        return 404, {"error": "InvalidEndpoint", "description": f"{method} {path}"}

    @staticmethod
    def _listing(name: str, items: list[dict[str, Any]]) -> dict[str, Any]:
        return {name: list(items), "next_page": None, "previous_page": None, "count": len(items)}

    def _export(self, query: dict[str, list[str]]) -> dict[str, Any]:
        ordered = sorted(self.tickets.values(), key=lambda t: (t["updated_at"], t["id"]))
        if "cursor" in query:
            stamp, last_id = _decode_cursor(query["cursor"][0])
            remaining = [t for t in ordered if (t["updated_at"], t["id"]) > (stamp, last_id)]
        else:
            start = datetime.fromtimestamp(int(query["start_time"][0]), UTC)
            remaining = [t for t in ordered if t["updated_at"] >= iso(start)]
        size = int(query.get("per_page", [self.page_size])[0])
        size = min(size, self.page_size)
        page = remaining[:size]
        end = len(remaining) <= size
        if page:
            cursor = _encode_cursor(page[-1]["updated_at"], page[-1]["id"])
        else:
            cursor = query["cursor"][0] if "cursor" in query else _encode_cursor("", 0)
        base = f"{self._base()}/api/v2/incremental/tickets/cursor.json"
        return {
            "tickets": copy.deepcopy(page),
            "after_cursor": cursor,
            "before_cursor": None,
            "after_url": f"{base}?cursor={cursor}",
            "before_url": None,
            "end_of_stream": end,
        }

    def _update_one(self, ticket_id: int, changes: dict[str, Any]) -> tuple[int, Any]:
        if ticket_id not in self.tickets:
            return 404, {"error": "RecordNotFound", "description": "Not found"}
        problem = _invalid(changes) or self._invalid_assignee(changes)
        if problem is not None:
            return 422, problem
        audit = self._bot_update(ticket_id, changes)
        return 200, {"ticket": self.tickets[ticket_id], "audit": audit}

    def _update_many(self, body: dict[str, Any]) -> tuple[int, Any]:
        tickets = body.get("tickets") or []
        if len(tickets) > 100:
            return 400, {"error": "TooManyValues", "description": "at most 100 tickets"}
        results = []
        for index, changes in enumerate(tickets):
            ticket_id = changes.get("id")
            problem = _invalid(changes) or self._invalid_assignee(changes)
            if ticket_id not in self.tickets:
                results.append(
                    {"index": index, "id": ticket_id, "error": "TicketNotFound", "success": False}
                )
            elif problem is not None:
                results.append(
                    {
                        "index": index,
                        "id": ticket_id,
                        "error": "TicketUpdateFailed",
                        "details": problem["details"]["priority"][0]["description"],
                        "success": False,
                    }
                )
            else:
                self._bot_update(ticket_id, changes)
                results.append(
                    {"index": index, "id": ticket_id, "status": "Updated", "success": True}
                )
        job_id = uuid.uuid4().hex
        job = {
            "id": job_id,
            "url": f"{self._base()}/api/v2/job_statuses/{job_id}.json",
            "job_type": "bulk_update",
            "status": "queued",
            "total": len(tickets),
            "progress": 0,
            "message": None,
            "results": None,
            "_results": results,
            "_polls": 0,
        }
        self.jobs[job_id] = job
        return 200, {"job_status": _public(job)}

    def _poll_job(self, job_id: str) -> dict[str, Any]:
        job = self.jobs[job_id]
        job["_polls"] += 1
        if job["_polls"] >= self.job_polls_before_done:
            job.update(status="completed", progress=job["total"], results=job["_results"])
        else:
            job["status"] = "working"
        return _public(job)

    def _bot_update(self, ticket_id: int, changes: dict[str, Any]) -> dict[str, Any]:
        ticket = self.tickets[ticket_id]
        events = self._apply(ticket, changes)
        comment = changes.get("comment")
        if comment:
            events.append(
                {
                    "id": next(self._ids),
                    "type": "Comment",
                    "author_id": self.bot_user_id,
                    "public": bool(comment.get("public", True)),
                    "body": comment.get("body"),
                }
            )
        self.now += timedelta(seconds=1)
        ticket["updated_at"] = iso(self.now)
        audit = self._audit(ticket_id, self.bot_user_id, self.now, events, "api")
        if self.trigger_on_update:
            self.webhook_outbox.append(
                self.webhook(
                    {"ticket_id": str(ticket_id), "updated_at": ticket["updated_at"][:16] + "Z"}
                )
            )
        return audit

    def _apply(self, ticket: dict[str, Any], changes: dict[str, Any]) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []

        def change(name: str, value: Any) -> None:
            previous = ticket.get(name)
            if previous == value:
                return
            ticket[name] = value
            events.append(
                {
                    "id": next(self._ids),
                    "type": "Change",
                    "field_name": name,
                    "value": value,
                    "previous_value": previous,
                }
            )

        for name in ("status", "priority", "assignee_id", "brand_id"):
            if name in changes:
                change(name, changes[name])
        tags = list(ticket["tags"])
        if "tags" in changes:
            tags = list(changes["tags"])  # Zendesk: ``tags`` replaces every tag
        for tag in changes.get("additional_tags") or ():
            if tag not in tags:
                tags.append(tag)
        removed = set(changes.get("remove_tags") or ())
        tags = [t for t in tags if t not in removed]
        if sorted(tags) != sorted(ticket["tags"]):
            change("tags", tags)
        for custom in changes.get("custom_fields") or ():
            fields = {f["id"]: f for f in ticket["custom_fields"]}
            if custom["id"] in fields:
                fields[custom["id"]]["value"] = custom["value"]
            else:
                ticket["custom_fields"].append({"id": custom["id"], "value": custom["value"]})
        return events

    def _audit(
        self,
        ticket_id: int,
        author_id: int,
        at: datetime,
        events: list[dict[str, Any]],
        channel: str,
    ) -> dict[str, Any]:
        audit = {
            "id": next(self._ids),
            "ticket_id": ticket_id,
            "created_at": iso(at),
            "author_id": author_id,
            "via": {"channel": channel, "source": {"from": {}, "to": {}, "rel": None}},
            "metadata": {"system": {}, "custom": {}},
            "events": events,
        }
        self.audits.setdefault(ticket_id, []).append(audit)
        return audit

    def _search_users(self, query: dict[str, list[str]]) -> dict[str, Any]:
        """``GET /users/search?query=``: ``email:x`` (or a bare address) matches the e-mail
        address exactly, case-insensitively, as Zendesk does."""
        wanted = (query.get("query") or [""])[0].strip().lower().removeprefix("email:")
        users = [
            user
            for _, user in sorted(self.users.items())
            if wanted and str(user.get("email") or "").lower() == wanted
        ]
        return {"users": users, "next_page": None, "previous_page": None, "count": len(users)}

    def _invalid_assignee(self, changes: dict[str, Any]) -> dict[str, Any] | None:
        """Zendesk refuses an assignee who is not an agent (or admin)."""
        if "assignee_id" not in changes or changes["assignee_id"] is None:
            return None
        user = self.users.get(int(changes["assignee_id"]))
        if user is not None and user.get("role") in ("agent", "admin"):
            return None
        return {
            "error": "RecordInvalid",
            "description": "Record validation errors",
            "details": {
                "assignee": [{"description": "Assignee is not an agent", "error": "InvalidValue"}]
            },
        }

    def tickets_by_priority(self) -> Iterator[tuple[int, str | None]]:
        for ticket_id, ticket in sorted(self.tickets.items()):
            yield ticket_id, ticket["priority"]


def _invalid(changes: dict[str, Any]) -> dict[str, Any] | None:
    if "priority" in changes and changes["priority"] not in PRIORITIES:
        return {
            "error": "RecordInvalid",
            "description": "Record validation errors",
            "details": {
                "priority": [
                    {
                        "description": f"Priority: {changes['priority']} is not valid",
                        "error": "InvalidValue",
                    }
                ]
            },
        }
    return None


def _public(job: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in job.items() if not key.startswith("_")}


def _encode_cursor(stamp: str, ticket_id: int) -> str:
    return base64.urlsafe_b64encode(f"{stamp}|{ticket_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[str, int]:
    padded = cursor + "=" * (-len(cursor) % 4)
    stamp, ticket_id = base64.urlsafe_b64decode(padded).decode().split("|")
    return stamp, int(ticket_id)
