"""The only module that talks to Jira: reads, the JQL search and writes, via python-jira.

python-jira is built lazily (its constructor already calls ``serverInfo``, so a Jira that
is down must not stop slabot from starting) with:

- REST API version 3, and the current Cloud search (``enhanced_search_issues`` ->
  ``/rest/api/3/search/jql`` with ``nextPageToken``): ``/rest/api/{2,3}/search`` answers
  410 Gone on Cloud. A site whose ``serverInfo`` does not say ``deploymentType: Cloud`` is
  refused, since python-jira then silently returns None from the new search.
- ``max_retries=0``: python-jira would otherwise sleep inside the caller (twice the
  Retry-After on 429/503, 13-43 s on a connection error); the outbox and the poller retry
  instead, with backoff and the Retry-After.

Errors: 429, 5xx, time-outs and connection failures raise ``JiraUnavailableError`` (a
``RetryableWriteError`` carrying the Retry-After); other 4xx raise ``JiraRejectedError``
(a ``PermanentWriteError``) with Jira's own error messages. ``str(JIRAError)`` prints the
request headers, credentials included, so it is never used: messages are built from the
status and Jira's error texts only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from typing import Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import requests
from jira import JIRA, JIRAError

from connectors.jira.config import JiraConfig
from connectors.jira.mapping import IssueBundle, issue_id_of
from connectors.jira.settings import JiraSettings
from slabot.store.outbox import PermanentWriteError, RetryableWriteError

log = logging.getLogger(__name__)

REST_API_VERSION = "3"
COMMENT_PAGE = 100
CHANGELOG_PAGE = 100


class JiraUnavailableError(RetryableWriteError):
    """Jira did not answer usefully now (429, 5xx, time-out, connection); try later.

    ``status`` is the HTTP status when Jira answered (429 and 503 ask to back off)."""

    def __init__(
        self, message: str, *, retry_after: float | None = None, status: int | None = None
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.status = status

    @property
    def backs_off(self) -> bool:
        """Jira asked every caller to wait (rate limit, or down for maintenance)."""
        return self.status in (429, 503)


class JiraRejectedError(PermanentWriteError):
    """Jira refused the request (4xx other than 429); repeating it cannot help."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class JiraNotFoundError(JiraRejectedError):
    """The issue does not exist, or slabot's account may not see it."""


@dataclass(frozen=True, slots=True)
class IssueEdit:
    """The change slabot makes to one issue: only what differs is set.

    ``priority`` is Jira's name (``High``); ``fields`` maps a field id to its new value
    (``duedate``: ``2026-11-24``; a date-time custom field: ``2026-11-24T08:30:00.000+0000``;
    None empties it); labels are added and removed, never replaced; ``comment`` is added
    as an internal comment after the edit; ``assignee`` is the account id the issue is
    assigned to ("Assign to me" in Slack).
    """

    issue_id: str
    priority: str | None = None
    fields: Mapping[str, str | None] = field(default_factory=dict)
    add_labels: tuple[str, ...] = ()
    remove_labels: tuple[str, ...] = ()
    comment: str | None = None
    assignee: str | None = None

    def is_empty(self) -> bool:
        return not (self.has_edit() or self.comment)

    def has_edit(self) -> bool:
        return bool(
            self.priority or self.fields or self.add_labels or self.remove_labels or self.assignee
        )

    def request(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(fields, update)`` for ``PUT /rest/api/3/issue/{id}``."""
        fields: dict[str, Any] = dict(self.fields)
        if self.priority:
            fields["priority"] = {"name": self.priority}
        if self.assignee:
            fields["assignee"] = {"accountId": self.assignee}
        update: dict[str, Any] = {}
        # Labels: the ``labels`` field would REPLACE people's labels; add/remove only ours.
        operations = [{"add": label} for label in self.add_labels]
        operations += [{"remove": label} for label in self.remove_labels]
        if operations:
            update["labels"] = operations
        return fields, update


@dataclass(frozen=True, slots=True)
class SearchPage:
    """One page of a JQL search: issues (JSON, with changelog) and the next page's token."""

    issues: list[dict[str, Any]]
    next_page_token: str | None


def document(text: str) -> dict[str, Any]:
    """Plain text as an Atlassian Document (API v3 comment bodies), a paragraph per line
    block."""
    paragraphs = [block.strip() for block in text.split("\n\n") if block.strip()]
    return {
        "type": "doc",
        "version": 1,
        "content": [
            {"type": "paragraph", "content": [{"type": "text", "text": block}]}
            for block in paragraphs
        ],
    }


class JiraClient:
    """Jira through python-jira. One instance serves the webhook worker, the poller and the
    flusher: each call is independent; the session pools connections."""

    def __init__(
        self,
        settings: JiraSettings,
        config: JiraConfig,
        *,
        timeout: float = 15.0,
        cache_ttl: float = 300.0,
        factory: Callable[..., JIRA] = JIRA,
    ) -> None:
        self.settings = settings
        self.config = config
        self._timeout = timeout
        self._factory = factory
        self._jira: JIRA | None = None
        self._lock = threading.Lock()
        self._bot_account_id: str | None = None
        self._account_zone: tzinfo | None = None
        # Memberships and status categories change rarely: kept for ``cache_ttl`` seconds.
        self._cache_ttl = cache_ttl
        self._cache: dict[tuple[str, str], tuple[float, Any]] = {}

    def __repr__(self) -> str:
        return f"JiraClient({self.settings.url!r})"

    @property
    def jira(self) -> JIRA:
        """python-jira, built on first use (it reads ``serverInfo`` then)."""
        with self._lock:
            if self._jira is None:
                with _translated("connecting (serverInfo)"):
                    jira = self._factory(
                        server=self.settings.url,
                        basic_auth=(self.settings.email, self.settings.api_token.reveal()),
                        options={"rest_api_version": REST_API_VERSION, "check_update": False},
                        max_retries=0,
                        timeout=self._timeout,
                        logging=False,
                    )
                if jira.deploymentType != "Cloud":
                    raise JiraRejectedError(
                        f"{self.settings.url} is not Jira Cloud (serverInfo says deploymentType "
                        f"{jira.deploymentType!r}); slabot uses Jira Cloud's REST API v3"
                    )
                self._jira = jira
            return self._jira

    # --- reads ---

    def bot_account_id(self) -> str:
        """slabot's own Atlassian account (whose changes are echoes, not people's)."""
        if self._bot_account_id is None:
            self._read_myself()
        assert self._bot_account_id is not None
        return self._bot_account_id

    def account_zone(self) -> tzinfo:
        """The time zone of slabot's account: JQL reads the dates it is given in it."""
        if self._account_zone is None:
            self._read_myself()
        assert self._account_zone is not None
        return self._account_zone

    def _read_myself(self) -> None:
        with _translated("reading slabot's own account (myself)"):
            me = self.jira.myself()
        self._bot_account_id = str(me["accountId"])
        try:
            self._account_zone = ZoneInfo(str(me.get("timeZone") or "UTC"))
        except (ZoneInfoNotFoundError, ValueError):
            self._account_zone = UTC

    def read(self, path: str, what: str, params: Mapping[str, str] | None = None) -> Any:
        """``GET /rest/api/3/{path}`` as JSON, errors translated (``slabot doctor``'s
        probes)."""
        with _translated(what):
            return self.jira._get_json(path, params=dict(params or {}))

    def fetch(self, issue_id: str, issue: Mapping[str, Any] | None = None) -> IssueBundle:
        """The issue's authoritative state: fields, whole changelog, comments, who of their
        authors are agents, and the categories of the statuses named. ``issue`` (from a
        search with the changelog expanded) saves one read."""
        bot = self.bot_account_id()
        what = f"issue {issue_id}"
        if issue is None:
            with _translated(f"reading {what}"):
                raw = self.jira.issue(issue_id, expand="changelog").raw
            data = dict(raw)
        else:
            data = dict(issue)
        issue_id = issue_id_of(data)
        histories = self._histories(issue_id, data)
        comments = self._comments(issue_id, data)
        fields = data.get("fields") or {}
        authors = {
            str(account["accountId"])
            for entry in [*histories, *comments]
            for account in (entry.get("author"),)
            if isinstance(account, Mapping) and account.get("accountId")
        }
        agents = None
        if not self.config.agents.anyone_but_reporter:
            project = fields.get("project") or {}
            agents = self.agents(authors - {bot}, str(project.get("key") or ""))
        return IssueBundle(
            data,
            histories,
            comments,
            agents,
            bot,
            self.status_categories(),
            site_url=self.settings.url,
        )

    def _histories(self, issue_id: str, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        changelog = data.get("changelog") or {}
        histories = list(changelog.get("histories") or [])
        total = int(changelog.get("total") or len(histories))
        if len(histories) >= total:
            return histories
        # The issue carries the first 100 entries at most: read the rest page by page.
        histories = []
        start = 0
        while True:
            with _translated(f"reading the changelog of issue {issue_id}"):
                page = self.jira._get_json(
                    f"issue/{issue_id}/changelog",
                    params={"startAt": start, "maxResults": CHANGELOG_PAGE},
                )
            values = list(page.get("values") or [])
            histories.extend(values)
            start += len(values)
            if page.get("isLast", True) or not values:
                return histories

    def _comments(self, issue_id: str, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        holder = (data.get("fields") or {}).get("comment") or {}
        comments = list(holder.get("comments") or [])
        total = int(holder.get("total") or len(comments))
        if holder and len(comments) >= total:
            return comments
        comments = []
        while True:
            with _translated(f"reading the comments of issue {issue_id}"):
                page = self.jira._get_json(
                    f"issue/{issue_id}/comment",
                    params={"startAt": len(comments), "maxResults": COMMENT_PAGE},
                )
            values = list(page.get("comments") or [])
            comments.extend(values)
            if not values or len(comments) >= int(page.get("total") or 0):
                return comments

    def agents(self, account_ids: Iterable[str], project_key: str) -> frozenset[str]:
        """Of ``account_ids``, those in a configured group or project role."""
        wanted_groups = {g.lower() for g in self.config.agents.groups}
        role_users: set[str] = set()
        role_groups: set[str] = set()
        if self.config.agents.roles and project_key:
            role_users, role_groups = self._role_members(project_key)
        agents = set()
        for account_id in account_ids:
            if account_id in role_users:
                agents.add(account_id)
                continue
            groups = self._groups_of(account_id) if wanted_groups or role_groups else set()
            if groups & (wanted_groups | role_groups):
                agents.add(account_id)
        return frozenset(agents)

    def _groups_of(self, account_id: str) -> set[str]:
        cached = self._cached("groups", account_id)
        if cached is not None:
            return set(cached)
        with _translated("reading a user's groups"):
            groups = self.jira._get_json("user/groups", params={"accountId": account_id})
        names = {str(g.get("name", "")).lower() for g in groups or [] if isinstance(g, dict)}
        self._remember("groups", account_id, names)
        return names

    def _role_members(self, project_key: str) -> tuple[set[str], set[str]]:
        """Users and groups named in the configured roles of a project."""
        cached = self._cached("roles", project_key)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        wanted = {r.lower() for r in self.config.agents.roles}
        users: set[str] = set()
        groups: set[str] = set()
        with _translated(f"reading the roles of project {project_key}"):
            roles = self.jira._get_json(f"project/{project_key}/role")
            for name, url in (roles or {}).items():
                if name.lower() not in wanted:
                    continue
                role_id = str(url).rstrip("/").rsplit("/", 1)[-1]
                role = self.jira._get_json(f"project/{project_key}/role/{role_id}")
                for actor in role.get("actors") or []:
                    user = actor.get("actorUser") or {}
                    group = actor.get("actorGroup") or {}
                    if user.get("accountId"):
                        users.add(str(user["accountId"]))
                    elif group.get("name") or actor.get("name"):
                        groups.add(str(group.get("name") or actor.get("name")).lower())
        self._remember("roles", project_key, (users, groups))
        return users, groups

    def account_id_by_email(self, email: str) -> str | None:
        """The account id of the active user with e-mail address ``email`` (``GET
        user/search?query=``, which matches the address even when the profile hides it),
        or None when Jira finds nobody, or several people."""
        with _translated("looking up a user by e-mail address"):
            users = self.jira.search_users(query=email.strip(), maxResults=2)
        # A hidden address is not in the answer: trust Jira's match when it is the only one.
        shown = [u for u in users if str(getattr(u, "emailAddress", "")).lower() == email.lower()]
        chosen = shown if shown else list(users)
        if len(chosen) != 1:
            return None
        return str(chosen[0].accountId)

    def status_categories(self) -> dict[str, str]:
        """Status name (lower case) -> category key, for every status of the site."""
        cached = self._cached("statuses", "")
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        with _translated("reading the statuses"):
            statuses = self.jira._get_json("status")
        categories = {
            str(s["name"]).lower(): str((s.get("statusCategory") or {}).get("key") or "")
            for s in statuses or []
            if isinstance(s, dict) and s.get("name")
        }
        self._remember("statuses", "", categories)
        return categories

    def _cached(self, kind: str, key: str) -> Any:
        entry = self._cache.get((kind, key))
        if entry is None or time.monotonic() - entry[0] > self._cache_ttl:
            return None
        return entry[1]

    def _remember(self, kind: str, key: str, value: Any) -> None:
        if len(self._cache) >= 10_000:
            self._cache.clear()
        self._cache[(kind, key)] = (time.monotonic(), value)

    def search(
        self, jql: str, *, next_page_token: str | None = None, max_results: int = 50
    ) -> SearchPage:
        """One page of ``jql`` through ``/rest/api/3/search/jql``, every field and the
        changelog included (so each issue needs no further read)."""
        with _translated("searching issues (JQL)"):
            result = self.jira.enhanced_search_issues(
                jql,
                nextPageToken=next_page_token,
                maxResults=max_results,
                fields="*all",
                expand="changelog",
                json_result=True,
            )
        page = cast(dict[str, Any], result)
        token = page.get("nextPageToken")
        return SearchPage(list(page.get("issues") or []), str(token) if token else None)

    def pages(self, jql: str, *, max_results: int = 50) -> Iterator[SearchPage]:
        """Every page of ``jql``, following ``nextPageToken`` to the last page."""
        token: str | None = None
        while True:
            page = self.search(jql, next_page_token=token, max_results=max_results)
            yield page
            token = page.next_page_token
            if token is None:
                return

    # --- writes ---

    def edit(self, change: IssueEdit) -> None:
        """One issue: one ``PUT`` with the fields and label operations, then the comment.

        python-jira's ``Issue.update`` PUTs and then reads the issue again."""
        what = f"updating issue {change.issue_id}"
        if change.has_edit():
            fields, update = change.request()
            with _translated(what):
                issue = self._issue_resource(change.issue_id)
                issue.update(fields=fields, update=update or None)
        if change.comment:
            self.add_comment(change.issue_id, change.comment)

    def add_comment(self, issue_id: str, text: str) -> None:
        """An internal comment (Jira Service Management: ``sd.public.comment`` internal)."""
        with _translated(f"commenting on issue {issue_id}"):
            body = cast(Any, document(text))  # API v3 takes a document, not plain text
            self.jira.add_comment(issue_id, body, is_internal=True)

    def _issue_resource(self, issue_id: str) -> Any:
        """An ``Issue`` resource for an id, without reading it first."""
        from jira.resources import Issue

        jira = self.jira
        url = jira._get_url(f"issue/{issue_id}")
        return Issue(jira._options, jira._session, raw={"id": issue_id, "self": url})


@contextmanager
def _translated(what: str) -> Iterator[None]:
    """Map python-jira and requests failures to slabot's two kinds, without credentials."""
    try:
        yield
    except JIRAError as error:
        status = error.status_code
        texts = _error_texts(error)
        response = error.response
        if status in (429, 503):
            retry_after = _retry_after(
                response.headers.get("Retry-After") if response is not None else None
            )
            wait = f"; retry after {retry_after:g} s" if retry_after is not None else ""
            raise JiraUnavailableError(
                f"Jira answered {status} while {what}{wait}",
                retry_after=retry_after,
                status=status,
            ) from None
        if status is None or status >= 500:
            raise JiraUnavailableError(
                f"Jira answered {status or 'an error'} while {what}: {texts}", status=status
            ) from None
        kind = JiraNotFoundError if status == 404 else JiraRejectedError
        raise kind(f"Jira refused ({status}) while {what}: {texts}", status=status) from None
    except requests.Timeout:
        raise JiraUnavailableError(f"Jira timed out while {what}") from None
    except requests.ConnectionError:
        raise JiraUnavailableError(f"could not connect to Jira while {what}") from None
    except requests.RequestException as error:
        raise JiraUnavailableError(
            f"Jira request failed while {what}: {type(error).__name__}"
        ) from None
    except ValueError as error:
        # python-jira raises it for a body that is not JSON (a proxy's error page).
        raise JiraUnavailableError(
            f"Jira's answer could not be read while {what}: {type(error).__name__}"
        ) from None


def _error_texts(error: JIRAError) -> str:
    """Jira's own words: ``errorMessages`` and the per-field ``errors``."""
    response = error.response
    parts: list[str] = []
    if response is not None:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            parts.extend(str(m) for m in body.get("errorMessages") or [])
            errors = body.get("errors")
            if isinstance(errors, dict):
                parts.extend(f"{name}: {text}" for name, text in sorted(errors.items()))
    if not parts and error.text:
        parts.append(str(error.text))
    return "; ".join(parts)[:500] or "no details given"


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None
