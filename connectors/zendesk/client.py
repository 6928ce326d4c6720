"""The only module that talks to Zendesk: reads, the incremental export and writes, via zenpy.

zenpy is built with its cache disabled (cached reads go stale for 30 s) and with a
``requests`` session of ours that:

- sends requests for ``https://{subdomain}.zendesk.com`` to ``ZENDESK_URL`` instead, when it
  is set (a host-mapped account, or a local fake in tests and the demo); absolute paging
  URLs the server returns are followed as given;
- turns a 429 into ``ZendeskUnavailableError(retry_after=...)`` at once, instead of zenpy
  sleeping on the Retry-After inside the caller (a webhook worker, the outbox flusher);
- spends the incremental export's budget (Zendesk allows 10 requests a minute there).

Errors: 429, 5xx, time-outs and connection failures raise ``ZendeskUnavailableError`` (a
``RetryableWriteError``); other 4xx raise ``ZendeskRejectedError`` (a
``PermanentWriteError``) with Zendesk's own description. Messages never carry credentials.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from zenpy import Zenpy
from zenpy.lib.api_objects import Comment, Ticket
from zenpy.lib.exception import APIException, RecordNotFoundException, ZenpyException

from connectors.polling import RequestBudget
from connectors.zendesk.mapping import TicketBundle
from connectors.zendesk.settings import ZendeskSettings
from slabot.store.outbox import PermanentWriteError, RetryableWriteError

log = logging.getLogger(__name__)

UPDATE_MANY_LIMIT = 100
"""Zendesk takes at most 100 tickets per ``update_many`` job."""
EXPORT_PATH = "/api/v2/incremental/"
AGENT_ROLES = frozenset({"agent", "admin"})


class ZendeskUnavailableError(RetryableWriteError):
    """Zendesk did not answer usefully now (429, 5xx, time-out, connection); try later."""


class ZendeskRejectedError(PermanentWriteError):
    """Zendesk refused the request (4xx other than 429); repeating it cannot help."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ZendeskNotFoundError(ZendeskRejectedError):
    """The ticket (or user, organization) does not exist or is not visible to slabot."""


class _RateLimitedError(requests.RequestException):
    """Raised by the session on a 429 so that zenpy does not sleep on it."""

    def __init__(self, retry_after: float | None) -> None:
        super().__init__("rate limited")
        self.retry_after = retry_after


class RoutedSession(requests.Session):
    """A requests session that routes Zendesk's URL to ``base_url``, refuses to sleep on
    429 and spends ``export_budget`` on incremental export requests."""

    def __init__(
        self, canonical: str, base_url: str, export_budget: RequestBudget | None = None
    ) -> None:
        super().__init__()
        self._canonical = canonical.rstrip("/")
        self._base = base_url.rstrip("/")
        self.export_budget = export_budget
        self.trust_env = False  # no proxy or netrc from the environment: credentials are ours
        adapter = HTTPAdapter(max_retries=0)  # retries are the outbox's and the poller's job
        self.mount("https://", adapter)
        self.mount("http://", adapter)
        self.calls = 0

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        target = url.decode() if isinstance(url, bytes) else url
        if target.startswith(self._canonical):
            target = self._base + target[len(self._canonical) :]
        if self.export_budget is not None and EXPORT_PATH in urlsplit(target).path:
            self.export_budget.acquire()
        self.calls += 1
        response = super().request(method, target, *args, **kwargs)
        if response.status_code == 429:
            raise _RateLimitedError(_retry_after(response.headers.get("Retry-After")))
        return response


@dataclass(frozen=True, slots=True)
class TicketUpdate:
    """The change slabot makes to one ticket: only what differs is set.

    ``priority`` is Zendesk's word (``high``); ``custom_fields`` maps field id -> text (None
    empties it); ``note`` becomes a private internal comment; ``assignee_id`` is the agent
    the ticket is assigned to ("Assign to me" in Slack).
    """

    ticket_id: int
    priority: str | None = None
    add_tags: tuple[str, ...] = ()
    remove_tags: tuple[str, ...] = ()
    custom_fields: Mapping[int, str | None] = field(default_factory=dict)
    note: str | None = None
    assignee_id: int | None = None

    def is_empty(self) -> bool:
        return not (
            self.priority
            or self.add_tags
            or self.remove_tags
            or self.custom_fields
            or self.note
            or self.assignee_id
        )

    def as_zenpy(self) -> Ticket:
        # Tags: ``tags`` would REPLACE the agents' tags; additional/remove only touch ours.
        values: dict[str, Any] = {"id": self.ticket_id}
        if self.priority:
            values["priority"] = self.priority
        if self.add_tags:
            values["additional_tags"] = list(self.add_tags)
        if self.remove_tags:
            values["remove_tags"] = list(self.remove_tags)
        if self.custom_fields:
            # Values are ISO strings: zenpy would serialize a datetime as a date only.
            values["custom_fields"] = [
                {"id": key, "value": value} for key, value in sorted(self.custom_fields.items())
            ]
        if self.note:
            values["comment"] = Comment(body=self.note, public=False)
        if self.assignee_id:
            values["assignee_id"] = self.assignee_id
        return Ticket(**values)


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """Per ticket of an ``update_many`` job: None when updated, else why not."""

    failures: dict[int, str]
    job_id: str


@dataclass(frozen=True, slots=True)
class ExportPage:
    """One page of the incremental ticket export: tickets (JSON) and where to resume."""

    tickets: list[dict[str, Any]]
    after_cursor: str | None
    end_of_stream: bool


class ZendeskClient:
    """Zendesk through zenpy. Thread-safe enough for one webhook worker plus one poller and
    one flusher: each call is independent; the session pools connections."""

    def __init__(
        self,
        settings: ZendeskSettings,
        *,
        timeout: float = 15.0,
        export_budget: RequestBudget | None = None,
        job_poll_interval: float = 1.0,
        job_timeout: float = 120.0,
        cache_ttl: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        # zenpy builds https://{subdomain}.{domain}/api/v2/... and only deserializes answers
        # from URLs containing "{subdomain}.{domain}", so both are taken from the base URL's
        # host; the session then swaps in the base URL's scheme (and path, if any).
        netloc = urlsplit(settings.base_url).netloc
        subdomain, domain = netloc.split(".", 1)
        canonical = f"https://{netloc}"
        self.session = RoutedSession(
            canonical, settings.base_url, export_budget or RequestBudget(10, 60.0)
        )
        credentials: dict[str, Any] = {}
        if settings.oauth_token is not None:
            credentials["oauth_token"] = settings.oauth_token.reveal()
        elif settings.api_token is not None:
            credentials["email"] = settings.email
            credentials["token"] = settings.api_token.reveal()
        self.zenpy = Zenpy(
            subdomain=subdomain,
            domain=domain,
            session=self.session,
            timeout=timeout,
            disable_cache=True,
            **credentials,
        )
        self._timeout = timeout
        self._job_poll_interval = job_poll_interval
        self._job_timeout = job_timeout
        self._sleep = sleep
        self._roles: dict[int, str] = {}
        # Requesters and organizations change rarely and are shared by many tickets: kept
        # for ``cache_ttl`` seconds (tickets and audits are never cached).
        self._cache: dict[tuple[str, int], tuple[float, dict[str, Any]]] = {}
        self._cache_ttl = cache_ttl
        self._bot_user_id: int | None = None

    def __repr__(self) -> str:
        return f"ZendeskClient({self.settings.base_url!r})"

    # --- reads ---

    def bot_user_id(self) -> int:
        """slabot's own Zendesk user (whose changes are echoes, not people's)."""
        if self._bot_user_id is None:
            with _translated("reading the API user (users/me)"):
                me = self.zenpy.users.me()
            self._bot_user_id = int(me.id)
            self._roles[self._bot_user_id] = str(getattr(me, "role", "agent"))
        return self._bot_user_id

    def read(self, path: str, what: str) -> dict[str, Any]:
        """``GET /api/v2/{path}`` as JSON, errors translated (``slabot doctor``'s probes:
        the status of a refusal matters there, 401 or 403, which zenpy's objects hide)."""
        url = f"{self.settings.base_url.rstrip('/')}/api/v2/{path}"
        with _translated(what):
            response = self.session.get(url, timeout=self._timeout)
            response.raise_for_status()
            body = response.json()
        if not isinstance(body, dict):
            raise ZendeskUnavailableError(f"Zendesk's answer was not an object while {what}")
        return body

    def fetch(self, ticket_id: int, ticket: Mapping[str, Any] | None = None) -> TicketBundle:
        """The ticket's authoritative state: ticket, audits, requester, organization and
        the roles of the audits' authors. ``ticket`` (from the export) saves one read."""
        what = f"ticket {ticket_id}"
        bot = self.bot_user_id()
        with _translated(f"reading {what}"):
            data = (
                dict(ticket) if ticket is not None else self.zenpy.tickets(id=ticket_id).to_dict()
            )
        with _translated(f"reading the audits of {what}"):
            audits = [audit.to_dict() for audit in self.zenpy.tickets.audits(ticket=ticket_id)]
        people = self.users(
            int(data[name]) for name in ("requester_id", "assignee_id") if data.get(name)
        )
        requester = people.get(int(data["requester_id"])) if data.get("requester_id") else None
        assignee = people.get(int(data["assignee_id"])) if data.get("assignee_id") else None
        group = self._group(int(data["group_id"])) if data.get("group_id") else None
        organization = None
        if data.get("organization_id"):
            organization = self._organization(int(data["organization_id"]))
        # Whose role matters: public repliers (first response) and whoever changed the
        # priority (an agent's change is a reclassification); -1 is Zendesk itself.
        authors = {
            int(event.get("author_id", audit.get("author_id")))
            for audit in audits
            for event in audit.get("events") or ()
            if event.get("type") in ("Comment", "VoiceComment") and event.get("public")
            if event.get("author_id", audit.get("author_id")) not in (None, -1)
        }
        authors.update(
            int(audit["author_id"])
            for audit in audits
            if audit.get("author_id") not in (None, -1, bot)
            if any(
                event.get("type") == "Change" and event.get("field_name") == "priority"
                for event in audit.get("events") or ()
            )
        )
        roles = self.roles(authors)
        agents = frozenset(uid for uid, role in roles.items() if role in AGENT_ROLES)
        return TicketBundle(
            data,
            audits,
            requester,
            organization,
            agents,
            bot,
            assignee=assignee,
            group=group,
            agent_url=f"{self.settings.base_url.rstrip('/')}/agent/tickets/{ticket_id}",
        )

    def users(self, user_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        """Users by id (the requester and the assignee of a ticket): cached ones for
        ``cache_ttl`` seconds, the others in one ``show_many`` per 100; unknown ids are
        left out."""
        found: dict[int, dict[str, Any]] = {}
        unknown: list[int] = []
        for user_id in sorted(set(user_ids)):
            cached = self._cached("user", user_id)
            if cached is not None:
                found[user_id] = cached
            else:
                unknown.append(user_id)
        for start in range(0, len(unknown), 100):
            chunk = unknown[start : start + 100]
            with _translated("reading users"):
                for user in self.zenpy.users(ids=chunk):
                    user_id = int(user.id)
                    self._roles[user_id] = str(user.role)
                    found[user_id] = user.to_dict()
                    self._remember("user", user_id, found[user_id])
        return found

    def agent_id_by_email(self, email: str) -> int | None:
        """The id of the agent (or admin) whose e-mail address is ``email``
        (``GET /users/search?query=email:...``), or None when no agent has it."""
        wanted = email.strip().lower()
        with _translated("looking up an agent by e-mail address"):
            for user in self.zenpy.users.search(query=f"email:{wanted}"):
                if str(user.email or "").lower() == wanted and user.role in ("agent", "admin"):
                    return int(user.id)
        return None

    def _group(self, group_id: int) -> dict[str, Any] | None:
        """A group (the ticket's queue): every group is read once (``GET /groups``) and kept
        for ``cache_ttl`` seconds; an id not among them reads the list again, once."""
        cached = self._cached("group", group_id)
        if cached is not None:
            return cached
        with _translated("reading groups"):
            groups = [group.to_dict() for group in self.zenpy.groups()]
        for group in groups:
            if group.get("id") is not None:
                self._remember("group", int(group["id"]), group)
        return self._cached("group", group_id)

    def roles(self, user_ids: Iterable[int]) -> dict[int, str]:
        """Users' roles (end-user, agent, admin), one ``show_many`` for the unknown ones."""
        wanted = set(user_ids)
        unknown = sorted(wanted - self._roles.keys())
        for start in range(0, len(unknown), 100):
            chunk = unknown[start : start + 100]
            with _translated("reading users"):
                for user in self.zenpy.users(ids=chunk):
                    self._roles[int(user.id)] = str(user.role)
        if len(self._roles) > 50_000:  # bounded: agents are few, end users many
            self._roles = {uid: r for uid, r in self._roles.items() if r in AGENT_ROLES}
        return {uid: self._roles.get(uid, "end-user") for uid in wanted}

    def _cached(self, kind: str, key: int) -> dict[str, Any] | None:
        entry = self._cache.get((kind, key))
        if entry is None or time.monotonic() - entry[0] > self._cache_ttl:
            return None
        return entry[1]

    def _remember(self, kind: str, key: int, value: dict[str, Any] | None) -> None:
        if len(self._cache) >= 10_000:
            self._cache.clear()
        if value is not None:
            self._cache[(kind, key)] = (time.monotonic(), value)

    def _user(self, user_id: int) -> dict[str, Any] | None:
        cached = self._cached("user", user_id)
        if cached is not None:
            return cached
        try:
            with _translated(f"reading user {user_id}"):
                user = self.zenpy.users(id=user_id)
        except ZendeskNotFoundError:
            return None
        self._roles[user_id] = str(user.role)
        result: dict[str, Any] = user.to_dict()
        self._remember("user", user_id, result)
        return result

    def _organization(self, organization_id: int) -> dict[str, Any] | None:
        cached = self._cached("organization", organization_id)
        if cached is not None:
            return cached
        try:
            with _translated(f"reading organization {organization_id}"):
                result: dict[str, Any] = self.zenpy.organizations(id=organization_id).to_dict()
        except ZendeskNotFoundError:
            return None
        self._remember("organization", organization_id, result)
        return result

    def export(
        self, *, cursor: str | None = None, start_time: datetime | None = None
    ) -> Iterator[ExportPage]:
        """The cursor-based incremental ticket export, a page at a time, from ``cursor``
        (stored) or ``start_time`` (a first run, a backfill). Each page's ``after_cursor``
        is where to resume once its tickets are processed. Stops at the end of the stream.

        Every request spends the export budget (10 a minute), waiting when it is used up.
        """
        if (cursor is None) == (start_time is None):
            raise ValueError("give the export either a cursor or a start time")
        with _translated("starting the incremental ticket export"):
            if cursor is not None:
                generator = self.zenpy.tickets.incremental(cursor=cursor)
            else:
                generator = self.zenpy.tickets.incremental(start_time=start_time)
        page: list[dict[str, Any]] = []
        page_cursor = getattr(generator, "after_cursor", None)
        iterator = iter(generator)
        while True:
            with _translated("reading the incremental ticket export"):
                try:
                    ticket = next(iterator)
                except StopIteration:
                    break
            current = getattr(generator, "after_cursor", None)
            if current != page_cursor:
                # zenpy fetched the next page: the one before is complete.
                yield ExportPage(page, page_cursor, False)
                page, page_cursor = [], current
            page.append(ticket.to_dict())
        yield ExportPage(page, page_cursor, bool(getattr(generator, "end_of_stream", True)))

    # --- writes ---

    def update(self, change: TicketUpdate) -> None:
        """One ticket, one PUT (zenpy sends only the attributes set)."""
        with _translated(f"updating ticket {change.ticket_id}"):
            self.zenpy.tickets.update(change.as_zenpy())

    def update_many(self, changes: Sequence[TicketUpdate]) -> JobOutcome:
        """Up to 100 tickets in one ``update_many`` job; follows the job to its end.

        Returns the tickets the job could not update, with Zendesk's reason. Raises
        ``ZendeskUnavailableError`` when the job cannot be followed to its end in time.
        """
        if not changes:
            return JobOutcome({}, "")
        if len(changes) > UPDATE_MANY_LIMIT:
            raise ValueError(f"update_many takes at most {UPDATE_MANY_LIMIT} tickets")
        if len(changes) == 1:
            # A job for one ticket costs a PUT and at least one poll; a plain update is one.
            try:
                self.update(changes[0])
            except ZendeskRejectedError as error:
                return JobOutcome({changes[0].ticket_id: str(error)}, "")
            return JobOutcome({}, "")
        with _translated(f"updating {len(changes)} tickets (update_many)"):
            job = self.zenpy.tickets.update([change.as_zenpy() for change in changes])
        return self._follow(str(job.id), [change.ticket_id for change in changes])

    def _follow(self, job_id: str, ticket_ids: Sequence[int]) -> JobOutcome:
        deadline = time.monotonic() + self._job_timeout
        while True:
            try:
                with _translated(f"reading job status {job_id}"):
                    status = self.zenpy.job_status(id=job_id)
            except ZendeskUnavailableError as error:
                # Zendesk accepted the job: its writes are made or being made. Raising here
                # had the outbox send them all again, a second internal note among them
                # (found by tests/proof/test_proof_faults.py): ask again until the deadline.
                if time.monotonic() >= deadline:
                    raise
                wait = error.retry_after
                seconds = wait.total_seconds() if isinstance(wait, timedelta) else wait or 0.0
                self._sleep(max(self._job_poll_interval, min(seconds, 10.0)))
                continue
            state = str(getattr(status, "status", ""))
            if state == "completed":
                return JobOutcome(_job_failures(status, ticket_ids), job_id)
            if state in ("failed", "killed"):
                message = str(getattr(status, "message", "") or state)
                return JobOutcome({tid: f"job {state}: {message}" for tid in ticket_ids}, job_id)
            if time.monotonic() >= deadline:
                raise ZendeskUnavailableError(
                    f"Zendesk job {job_id} for {len(ticket_ids)} tickets was still {state!r} "
                    f"after {self._job_timeout:.0f} s"
                )
            self._sleep(self._job_poll_interval)


def _job_failures(status: Any, ticket_ids: Sequence[int]) -> dict[int, str]:
    failures: dict[int, str] = {}
    results = getattr(status, "results", None) or []
    seen: set[int] = set()
    for result in results:
        item = result.to_dict() if hasattr(result, "to_dict") else dict(result)
        ticket_id = item.get("id")
        if ticket_id is None:
            continue
        seen.add(int(ticket_id))
        if item.get("success") is False or item.get("error"):
            reason = item.get("details") or item.get("error") or "not updated"
            failures[int(ticket_id)] = f"Zendesk refused the update: {reason}"
    return failures


@contextmanager
def _translated(what: str) -> Iterator[None]:
    """Map zenpy and requests failures to slabot's two kinds, without credentials."""
    try:
        yield
    except _RateLimitedError as error:
        wait = f"; retry after {error.retry_after:g} s" if error.retry_after is not None else ""
        raise ZendeskUnavailableError(
            f"Zendesk rate limit (429) while {what}{wait}", retry_after=error.retry_after
        ) from None
    except RecordNotFoundException as error:
        raise ZendeskNotFoundError(
            f"Zendesk: not found while {what}: {_description(error)}", status=404
        ) from None
    except APIException as error:
        response = getattr(error, "response", None)
        status = getattr(response, "status_code", None)
        description = _description(error)
        if status is None or status >= 500:
            raise ZendeskUnavailableError(
                f"Zendesk answered {status or 'an error'} while {what}: {description}"
            ) from None
        raise ZendeskRejectedError(
            f"Zendesk refused ({status}) while {what}: {description}", status=status
        ) from None
    except requests.HTTPError as error:
        status = getattr(error.response, "status_code", None)
        if status is not None and 400 <= status < 500:
            raise ZendeskRejectedError(
                f"Zendesk refused ({status}) while {what}", status=status
            ) from None
        raise ZendeskUnavailableError(f"Zendesk answered {status} while {what}") from None
    except requests.Timeout:
        raise ZendeskUnavailableError(f"Zendesk timed out while {what}") from None
    except requests.ConnectionError:
        raise ZendeskUnavailableError(f"could not connect to Zendesk while {what}") from None
    except (requests.RequestException, ZenpyException) as error:
        raise ZendeskUnavailableError(
            f"Zendesk request failed while {what}: {type(error).__name__}"
        ) from None


def _description(error: APIException) -> str:
    """Zendesk's own words: ``description`` and the per-field ``details``."""
    text = str(error.args[0]) if error.args else ""
    try:
        body = json.loads(text)
    except ValueError:
        return text[:300] or type(error).__name__
    if not isinstance(body, dict):
        return text[:300]
    parts = []
    error_name = body.get("error")
    if isinstance(error_name, dict):
        parts.append(str(error_name.get("title") or error_name.get("message") or ""))
    elif error_name:
        parts.append(str(error_name))
    if body.get("description"):
        parts.append(str(body["description"]))
    details = body.get("details")
    if isinstance(details, dict):
        for name, problems in sorted(details.items()):
            for problem in problems if isinstance(problems, list) else [problems]:
                detail = problem.get("description") if isinstance(problem, dict) else problem
                parts.append(f"{name}: {detail}")
    return "; ".join(p for p in parts if p)[:500] or "no description"


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None
