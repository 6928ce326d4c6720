"""``slabot doctor``: probe each credential and permission slabot needs, and say what to fix.

Each enabled connector is asked, with the service's own settings and clients:

- Zendesk: ``users/me`` (the token works; the user is an **admin**, since the incremental
  export the poller reads is allowed for admins only: an agent's token is answered 403
  there), and every custom field the ``zendesk:`` section names exists (``ticket_fields/{id}``,
  ``organization_fields``, ``user_fields``);
- Jira: ``myself`` (the token works), ``mypermissions`` per configured project
  (BROWSE_PROJECTS, EDIT_ISSUES, SCHEDULE_ISSUES for the due date, ADD_COMMENTS), every
  configured custom field exists (``field``); an API token's expiry is not exposed by
  Jira's REST API, which is said rather than guessed;
- Slack: ``auth.test`` (the bot token works; its scopes, from ``X-OAuth-Scopes``, against the
  manifest's), ``apps.connections.open`` with the app-level token in Socket Mode,
  ``conversations.info`` for every configured channel and ``usergroups.list`` for the
  reclassifying groups.

Every check is OK, WARN, FAIL or INFO with what to fix; ``run_checks`` never raises for a
system's answer. A check is ``refused`` when the system refused the credentials (401/403,
``invalid_auth``): ``record`` turns each connector's credential check into the ``credentials``
activity of ``/readyz``. ``slabot run`` runs the same checks in the background at start
(``start_up``): it logs them and never refuses to start over them.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from connectors.jira.client import JiraClient, JiraRejectedError, JiraUnavailableError
from connectors.zendesk.client import ZendeskClient, ZendeskRejectedError, ZendeskUnavailableError
from connectors.zendesk.config import OrganizationFieldSource, UserFieldSource
from slabot.service.health import Health, refused
from slabot.service.logs import SecretMasker
from slabot.service.settings import Settings

log = logging.getLogger(__name__)

Status = Literal["ok", "warn", "fail", "info"]
MANIFEST = Path(__file__).resolve().parents[2] / "slack" / "manifest.yaml"
CREDENTIALS = "credentials"
"""The name of each connector's identity check, and of its activity in ``/readyz``."""
JIRA_PERMISSIONS = {
    "BROWSE_PROJECTS": "read the project's issues",
    "EDIT_ISSUES": "write the priority and labels",
    "SCHEDULE_ISSUES": "write the due date",
    "ADD_COMMENTS": "add the internal comment on a reclassification",
}
SLACK_REFUSALS = frozenset(
    {"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive"}
)
RECHECK_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Check:
    """One probe's outcome: ``status``, what was found, and what to do about it."""

    system: str
    name: str
    status: Status
    detail: str
    fix: str = ""
    refused: bool = False
    """The system refused the credentials (401/403, ``invalid_auth``): a person must act."""

    def text(self) -> str:
        line = f"{self.status.upper():4}  {self.system} {self.name}: {self.detail}"
        return f"{line}\n      fix: {self.fix}" if self.fix else line


def run_checks(
    settings: Settings,
    *,
    client_options: Mapping[str, Mapping[str, Any]] | None = None,
    credentials_only: bool = False,
) -> list[Check]:
    """Probe every enabled connector (``credentials_only``: only whether its credentials
    work, as the start-up re-check does). Secrets never appear in what it returns."""
    options = client_options or {}
    checks: list[Check] = []
    if not settings.enabled:
        checks.append(
            Check(
                "slabot",
                "connectors",
                "warn",
                "no connector is configured",
                "set ZENDESK_*, JIRA_* or SLACK_* (see docs/deploy.md)",
            )
        )
    if settings.zendesk is not None:
        client = ZendeskClient(settings.zendesk, **{"timeout": 10.0, **options.get("zendesk", {})})
        checks += _zendesk(client, settings, credentials_only)
    if settings.jira is not None and settings.jira_config is not None:
        jira = JiraClient(
            settings.jira, settings.jira_config, **{"timeout": 10.0, **options.get("jira", {})}
        )
        checks += _jira(jira, settings, credentials_only)
    if settings.slack is not None:
        from slabot.slack.app import make_client

        slack = make_client(settings.slack, **{"timeout": 10, **options.get("slack", {})})
        checks += _slack(slack, settings, credentials_only)
    masker = SecretMasker(settings.secrets())
    return [
        Check(c.system, c.name, c.status, masker.mask(c.detail), masker.mask(c.fix), c.refused)
        for c in checks
    ]


def failed(checks: Iterable[Check]) -> bool:
    return any(check.status == "fail" for check in checks)


def render(checks: list[Check], form: str = "text") -> str:
    """The report as text (one line per check, its fix below) or JSON."""
    if form == "json":
        return json.dumps(
            {"ok": not failed(checks), "checks": [asdict(check) for check in checks]}, indent=2
        )
    counts = {status: sum(c.status == status for c in checks) for status in ("fail", "warn")}
    summary = f"{counts['fail']} failed, {counts['warn']} warnings, {len(checks)} checks"
    return "\n".join([*(check.text() for check in checks), summary])


def record(health: Health, checks: Iterable[Check]) -> None:
    """Each connector's credential check as its ``credentials`` activity in ``/readyz``."""
    for check in checks:
        if check.name != CREDENTIALS:
            continue
        if check.status == "fail":
            health.failed(
                check.system, CREDENTIALS, check.detail, credentials_refused=check.refused
            )
        else:
            health.succeeded(check.system, CREDENTIALS)


def start_up(
    settings: Settings,
    health: Health,
    *,
    client_options: Mapping[str, Mapping[str, Any]] | None = None,
    recheck_seconds: float = RECHECK_SECONDS,
    stopped: threading.Event | None = None,
) -> threading.Thread:
    """``slabot run``'s doctor: on a background thread (a slow or unreachable system must not
    hold up the start), run every check, log each with its fix and record the credential
    checks in ``health``; then, while some connector's credentials are refused or could not
    be checked, check them again every ``recheck_seconds``."""
    stop = stopped or threading.Event()

    def work() -> None:
        checks = _safely(lambda: run_checks(settings, client_options=client_options))
        for check in checks:
            level = {"ok": logging.INFO, "info": logging.INFO, "warn": logging.WARNING}.get(
                check.status, logging.ERROR
            )
            log.log(level, "doctor: %s", check.text().replace("\n      fix:", "; fix:"))
        record(health, checks)
        while _credentials_pending(checks) and not stop.wait(recheck_seconds):
            checks = _safely(
                lambda: run_checks(settings, client_options=client_options, credentials_only=True)
            )
            record(health, checks)
            for check in checks:
                if check.name == CREDENTIALS and check.status == "ok":
                    log.info("doctor: %s", check.text())

    thread = threading.Thread(target=work, name="slabot-doctor", daemon=True)
    thread.start()
    return thread


def _safely(probe: Callable[[], list[Check]]) -> list[Check]:
    try:
        return probe()
    except Exception as error:  # a bug in a probe must not take the service down
        log.error("doctor: the checks failed: %s: %s", type(error).__name__, error)
        return []


def _credentials_pending(checks: list[Check]) -> bool:
    return any(c.name == CREDENTIALS and c.status == "fail" for c in checks)


# --- Zendesk ---


def _zendesk(client: ZendeskClient, settings: Settings, credentials_only: bool) -> list[Check]:
    assert settings.zendesk is not None
    who = settings.zendesk.email or "the OAuth token's user"
    try:
        me = client.read("users/me.json", "reading the API user (users/me)").get("user") or {}
    except (ZendeskRejectedError, ZendeskUnavailableError) as error:
        return [_refusal("zendesk", error, _ZENDESK_TOKEN_FIX)]
    if me.get("id") is None:  # Zendesk answers an anonymous user to unknown credentials
        return [
            Check(
                "zendesk",
                CREDENTIALS,
                "fail",
                "Zendesk answered as an anonymous user: the credentials were not accepted",
                _ZENDESK_TOKEN_FIX,
                refused=True,
            )
        ]
    role = str(me.get("role") or "")
    checks = [
        Check(
            "zendesk", CREDENTIALS, "ok", f"signed in as {me.get('email') or who} (id {me['id']})"
        )
    ]
    if role == "admin":
        checks.append(Check("zendesk", "role", "ok", "admin (the incremental export needs one)"))
    else:
        checks.append(
            Check(
                "zendesk",
                "role",
                "fail",
                f"slabot's user is {role or 'of no role'}: the incremental export the poller "
                "reads is allowed for admins only (Zendesk answers 403), so changes a webhook "
                "missed are never caught up",
                "make slabot's Zendesk user an admin (Admin Center > People > Team members), "
                "or use an admin's API token",
            )
        )
    if credentials_only or settings.zendesk_config is None:
        return checks
    config = settings.zendesk_config
    ticket_fields: dict[int, str] = {}
    keyed: dict[str, set[str]] = {"organization_field": set(), "user_field": set()}
    for name, sources in config.fields.items():
        for source in sources if isinstance(sources, list) else [sources]:
            if source.source == "ticket_field":
                ticket_fields[source.id] = f"fields.{name}"
            elif isinstance(source, OrganizationFieldSource | UserFieldSource):
                keyed[source.source].add(source.key)
    for target, due in config.due_fields.items():
        ticket_fields[due.id] = f"due_fields.{target}"
    for field_id, where in sorted(ticket_fields.items()):
        checks.append(_zendesk_ticket_field(client, field_id, where))
    for kind, keys in keyed.items():
        if keys:
            checks.append(_zendesk_keyed_fields(client, kind, keys))
    return checks


_ZENDESK_TOKEN_FIX = (
    "check ZENDESK_EMAIL and ZENDESK_API_TOKEN (Admin Center > Apps and integrations > APIs > "
    "Zendesk API: token access enabled, the token active; the email is its user's) or "
    "ZENDESK_OAUTH_TOKEN"
)


def _zendesk_ticket_field(client: ZendeskClient, field_id: int, where: str) -> Check:
    name = f"field {where}"
    try:
        found = client.read(f"ticket_fields/{field_id}.json", f"reading ticket field {field_id}")
    except ZendeskRejectedError as error:
        if error.status == 404:
            return Check(
                "zendesk",
                name,
                "fail",
                f"no ticket field {field_id}",
                "create it or correct the id (Admin Center > Objects and rules > Tickets > "
                "Fields shows each field's id)",
            )
        return _failure("zendesk", name, error)
    except ZendeskUnavailableError as error:
        return _failure("zendesk", name, error)
    field = found.get("ticket_field") or {}
    if field.get("active") is False:
        return Check("zendesk", name, "warn", f"ticket field {field_id} is inactive", "activate it")
    return Check("zendesk", name, "ok", f"ticket field {field_id} ({field.get('type')})")


def _zendesk_keyed_fields(client: ZendeskClient, kind: str, keys: set[str]) -> Check:
    listing = "organization_fields" if kind == "organization_field" else "user_fields"
    name = listing.replace("_", " ")
    try:
        found = client.read(f"{listing}.json", f"reading the {listing.replace('_', ' ')}")
    except (ZendeskRejectedError, ZendeskUnavailableError) as error:
        return _failure("zendesk", name, error)
    known = {str(item.get("key")) for item in found.get(listing) or [] if isinstance(item, dict)}
    missing = sorted(keys - known)
    if missing:
        what = "organization" if kind == "organization_field" else "user"
        return Check(
            "zendesk",
            name,
            "fail",
            f"no {what} field with key {', '.join(missing)}",
            f"create it (Admin Center > Objects and rules > {what.title()}s > Fields) or "
            "correct the key in the zendesk: section",
        )
    return Check("zendesk", name, "ok", f"{', '.join(sorted(keys))} exist")


# --- Jira ---


def _jira(client: JiraClient, settings: Settings, credentials_only: bool) -> list[Check]:
    assert settings.jira is not None and settings.jira_config is not None
    try:
        me = client.read("myself", "reading slabot's own account (myself)")
    except (JiraRejectedError, JiraUnavailableError) as error:
        return [_refusal("jira", error, _JIRA_TOKEN_FIX)]
    checks = [
        Check(
            "jira",
            CREDENTIALS,
            "ok",
            f"signed in as {me.get('emailAddress') or settings.jira.email} "
            f"(account {me.get('accountId')})",
        ),
        Check(
            "jira",
            "token expiry",
            "info",
            "Jira's REST API does not say when an API token expires (Atlassian's tokens "
            "expire within a year of their creation)",
            "see the date at id.atlassian.com > Security > API tokens, signed in as slabot's "
            "account, and rotate before it (docs/operations.md)",
        ),
    ]
    if credentials_only:
        return checks
    config = settings.jira_config
    wanted = dict(JIRA_PERMISSIONS)
    if config.due_date is None:
        wanted.pop("SCHEDULE_ISSUES")
    projects: list[str | None] = [*config.projects] or [None]
    for project in projects:
        checks.append(_jira_permissions(client, project, wanted))
    field_ids = {
        source.id: f"fields.{name}"
        for name, sources in config.fields.items()
        for source in (sources if isinstance(sources, list) else [sources])
        if source.source == "field"
    }
    if config.due_instant_field is not None:
        field_ids[config.due_instant_field.id] = "due_instant_field"
    if field_ids:
        checks.append(_jira_fields(client, field_ids))
    return checks


_JIRA_TOKEN_FIX = (
    "check JIRA_EMAIL and JIRA_API_TOKEN (id.atlassian.com > Security > API tokens: an expired "
    "or revoked token is answered 401; the email is the token's account)"
)


def _jira_permissions(client: JiraClient, project: str | None, wanted: dict[str, str]) -> Check:
    where = f"project {project}" if project else "the site (no projects configured)"
    name = f"permissions {project}" if project else "permissions"
    params = {"permissions": ",".join(wanted)}
    if project:
        params["projectKey"] = project
    try:
        found = client.read("mypermissions", f"reading slabot's permissions in {where}", params)
    except (JiraRejectedError, JiraUnavailableError) as error:
        return _failure("jira", name, error)
    granted = found.get("permissions") or {}
    missing = [key for key in wanted if not (granted.get(key) or {}).get("havePermission", False)]
    if missing:
        needs = "; ".join(f"{key} to {wanted[key]}" for key in missing)
        return Check(
            "jira",
            name,
            "fail",
            f"slabot's account lacks in {where}: {needs}",
            "grant them to slabot's account in the project's permission scheme (Project "
            "settings > Permissions), e.g. through a role it holds",
        )
    return Check("jira", name, "ok", f"{', '.join(wanted)} in {where}")


def _jira_fields(client: JiraClient, field_ids: dict[str, str]) -> Check:
    try:
        fields = client.read("field", "reading the fields")
    except (JiraRejectedError, JiraUnavailableError) as error:
        return _failure("jira", "fields", error)
    known = {str(item.get("id")) for item in fields or [] if isinstance(item, dict)}
    missing = sorted(f"{fid} ({where})" for fid, where in field_ids.items() if fid not in known)
    if missing:
        return Check(
            "jira",
            "fields",
            "fail",
            f"no such field: {', '.join(missing)}",
            "correct the id in the jira: section (Jira settings > Issues > Custom fields; the "
            "id is customfield_ and the number in the field's edit URL)",
        )
    return Check("jira", "fields", "ok", f"{', '.join(sorted(field_ids))} exist")


# --- Slack ---


def manifest_scopes(path: Path = MANIFEST) -> set[str]:
    """The bot scopes ``slack/manifest.yaml`` asks for (empty when it is not shipped)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return set()
    return set(((data or {}).get("oauth_config") or {}).get("scopes", {}).get("bot") or [])


def _slack(client: WebClient, settings: Settings, credentials_only: bool) -> list[Check]:
    assert settings.slack is not None
    try:
        answer = client.auth_test()
    except SlackApiError as error:
        code = str(error.response.get("error") or "")
        return [
            Check(
                "slack",
                CREDENTIALS,
                "fail",
                f"auth.test answered {code}",
                "check SLACK_BOT_TOKEN: the app's Bot User OAuth Token (OAuth & Permissions); "
                "reinstall the app if it was revoked",
                refused=code in SLACK_REFUSALS,
            )
        ]
    except SlackClientError as error:
        return [_unreachable("slack", CREDENTIALS, error)]
    except OSError as error:
        return [_unreachable("slack", CREDENTIALS, error)]
    headers = {str(k).lower(): v for k, v in (answer.headers or {}).items()}
    raw = headers.get("x-oauth-scopes")
    scopes = {s.strip() for s in str(raw[0] if isinstance(raw, list) else raw or "").split(",")}
    scopes.discard("")
    checks = [
        Check(
            "slack",
            CREDENTIALS,
            "ok",
            f"signed in as {answer.get('user')} ({answer.get('user_id')}) in "
            f"{answer.get('team')} ({answer.get('team_id')})",
        )
    ]
    wanted = manifest_scopes()
    missing = sorted(wanted - scopes)
    if raw is None:
        checks.append(Check("slack", "scopes", "info", "Slack did not list the token's scopes"))
    elif missing:
        checks.append(
            Check(
                "slack",
                "scopes",
                "fail",
                f"the bot token lacks {', '.join(missing)} (slack/manifest.yaml asks for them)",
                "add them under OAuth & Permissions > Scopes and reinstall the app",
            )
        )
    else:
        checks.append(Check("slack", "scopes", "ok", f"the manifest's {len(wanted)} scopes"))
    if settings.slack.app_token is not None:
        checks.append(_socket_mode(client, settings.slack.app_token.reveal()))
    if credentials_only or settings.slack_config is None:
        return checks
    config = settings.slack_config
    channels = dict.fromkeys(
        [
            *([config.nudges.default_channel] if config.nudges.default_channel else []),
            *config.nudges.queue_channels.values(),
            *(digest.channel for digest in config.digests),
            *config.channels,
        ]
    )
    for channel in channels:
        checks.append(_slack_channel(client, channel, "chat:write.public" in scopes))
    if config.reclassify.user_groups:
        checks.append(_slack_groups(client, config.reclassify.user_groups))
    return checks


def _socket_mode(client: WebClient, app_token: str) -> Check:
    try:
        client.apps_connections_open(app_token=app_token)
    except SlackApiError as error:
        code = str(error.response.get("error") or "")
        return Check(
            "slack",
            "socket mode",
            "fail",
            f"apps.connections.open answered {code}",
            "check SLACK_APP_TOKEN (Basic Information > App-Level Tokens, with "
            "connections:write) and that Socket Mode is enabled for the app",
            refused=code in SLACK_REFUSALS,
        )
    except (SlackClientError, OSError) as error:
        return _unreachable("slack", "socket mode", error)
    return Check("slack", "socket mode", "ok", "the app-level token opens a connection")


def _slack_channel(client: WebClient, channel: str, public_scope: bool) -> Check:
    name = f"channel {channel}"
    try:
        found = client.conversations_info(channel=channel).get("channel") or {}
    except SlackApiError as error:
        code = str(error.response.get("error") or "")
        if code == "missing_scope":
            return Check(
                "slack",
                name,
                "warn",
                "not checked: the token lacks channels:read (and groups:read for private "
                "channels), which slabot does not otherwise need",
                "add them to the app's scopes to let doctor check channels, or check by hand "
                "that the bot is in this channel",
            )
        return Check(
            "slack",
            name,
            "fail",
            f"conversations.info answered {code}: no such channel, or a private one the "
            "bot is not in",
            "correct the id in the slack: section, or invite the bot (/invite @slabot)",
        )
    except (SlackClientError, OSError) as error:
        return _unreachable("slack", name, error)
    label = f"#{found.get('name')}"
    if found.get("is_archived"):
        return Check("slack", name, "fail", f"{label} is archived", "choose another channel")
    if not found.get("is_member"):
        if found.get("is_private"):
            return Check(
                "slack",
                name,
                "fail",
                f"{label} is private and the bot is not in it",
                "invite the bot (/invite @slabot)",
            )
        if not public_scope:
            return Check(
                "slack",
                name,
                "fail",
                f"the bot is not in {label} and lacks chat:write.public",
                "invite the bot (/invite @slabot) or add the chat:write.public scope",
            )
    return Check("slack", name, "ok", f"{label}, the bot can post there")


def _slack_groups(client: WebClient, groups: list[str]) -> Check:
    try:
        listed = client.usergroups_list().get("usergroups") or []
    except SlackApiError as error:
        code = str(error.response.get("error") or "")
        return Check(
            "slack",
            "user groups",
            "fail",
            f"usergroups.list answered {code}",
            "add the usergroups:read scope and reinstall the app",
        )
    except (SlackClientError, OSError) as error:
        return _unreachable("slack", "user groups", error)
    known = {str(group.get("id")) for group in listed if isinstance(group, dict)}
    missing = [group for group in groups if group not in known]
    if missing:
        return Check(
            "slack",
            "user groups",
            "fail",
            f"no user group {', '.join(missing)} (slack.reclassify.user_groups)",
            "correct the id (a user group's id is in its URL: S0123ABCD)",
        )
    return Check("slack", "user groups", "ok", f"{', '.join(groups)} exist")


# --- shared ---


def _refusal(system: str, error: Exception, fix: str) -> Check:
    """The identity probe failed: refused (a person must act) or unreachable (try later)."""
    if refused(error):
        return Check(system, CREDENTIALS, "fail", str(error), fix, refused=True)
    return _unreachable(system, CREDENTIALS, error)


def _unreachable(system: str, name: str, error: BaseException) -> Check:
    return Check(
        system,
        name,
        "fail",
        f"could not check: {error}",
        "check the address and the network (a proxy, a firewall); this is not a refusal",
    )


def _failure(system: str, name: str, error: BaseException) -> Check:
    if refused(error):
        return Check(
            system, name, "fail", str(error), "slabot's account may not read this: see its role"
        )
    return _unreachable(system, name, error)
