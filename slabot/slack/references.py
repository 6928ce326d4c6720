"""Ticket references as agents type them (ZD-123, a Zendesk URL, OPS-42, a Jira URL) and links.

Pure: text in, ``TicketRef`` out. Slack may wrap a pasted URL as ``<https://...>`` or
``<https://...|label>``; both are unwrapped.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, urlsplit

from bot.errors import SlabotError

ZENDESK = "zendesk"
JIRA = "jira"

_ZENDESK_SHORT = re.compile(r"^(?:ZD|ZENDESK)[-#: ]?(\d{1,19})$", re.IGNORECASE)
_ZENDESK_PATH = re.compile(r"^/(?:agent/tickets|hc/(?:[a-z-]+/)?requests|tickets)/(\d{1,19})")
_ZENDESK_API_PATH = re.compile(r"^/api/v2/tickets/(\d{1,19})(?:\.json)?$")
_JIRA_KEY = re.compile(r"^([A-Z][A-Z0-9_]{0,254})-(\d{1,18})$")
_JIRA_PATH = re.compile(r"/browse/([A-Za-z][A-Za-z0-9_]*-\d{1,18})/?$")


class BadReferenceError(SlabotError):
    """The text names no ticket slabot can look up."""


@dataclass(frozen=True, slots=True)
class TicketRef:
    """A ticket as an agent named it: ``source`` and the key they typed.

    For Zendesk ``key`` is the ticket id (``123``), which is also slabot's external key.
    For Jira it is the issue key (``OPS-42``), which slabot resolves to the issue id it
    stores; a number typed as ``jira:10001`` is taken as the issue id itself.
    """

    source: str
    key: str

    @property
    def label(self) -> str:
        """How the ticket is shown: ``ZD-123``, ``OPS-42``."""
        if self.source == ZENDESK:
            return f"ZD-{self.key}"
        return self.key


def parse_ticket_ref(text: str) -> TicketRef:
    """The ticket named by ``text``.

    >>> parse_ticket_ref("ZD-123"), parse_ticket_ref("ops-42")
    (TicketRef(source='zendesk', key='123'), TicketRef(source='jira', key='OPS-42'))
    >>> parse_ticket_ref("<https://acme.zendesk.com/agent/tickets/123|#123>")
    TicketRef(source='zendesk', key='123')
    >>> parse_ticket_ref("https://acme.atlassian.net/browse/OPS-42")
    TicketRef(source='jira', key='OPS-42')
    """
    value = _unwrap(text.strip())
    if not value:
        raise BadReferenceError("no ticket given")
    short = _ZENDESK_SHORT.match(value)
    if short:
        return TicketRef(ZENDESK, str(int(short.group(1))))
    if value.lower().startswith("jira:") and value[5:].strip().isdigit():
        return TicketRef(JIRA, str(int(value[5:].strip())))
    key = _JIRA_KEY.match(value.upper())
    if key and not value.upper().startswith(("ZD-", "ZENDESK-")):
        return TicketRef(JIRA, f"{key.group(1)}-{int(key.group(2))}")
    if value.lower().startswith(("http://", "https://")):
        return _from_url(value)
    raise BadReferenceError(
        f"{value[:80]!r} names no ticket; give ZD-123, a Zendesk ticket URL, a Jira key like "
        "OPS-42 or a Jira issue URL"
    )


def _unwrap(text: str) -> str:
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].split("|", 1)[0]
    return text.strip()


def _from_url(url: str) -> TicketRef:
    parts = urlsplit(url)
    path = parts.path or "/"
    host = (parts.hostname or "").lower()
    for pattern in (_ZENDESK_PATH, _ZENDESK_API_PATH):
        found = pattern.match(path)
        if found:
            return TicketRef(ZENDESK, str(int(found.group(1))))
    found_key = _JIRA_PATH.search(path)
    if found_key:
        return _jira_key(found_key.group(1))
    selected = parse_qs(parts.query).get("selectedIssue") or []
    if selected and _JIRA_KEY.match(selected[0].upper()):
        return _jira_key(selected[0])
    where = "Zendesk" if host.endswith("zendesk.com") else "Jira" if "atlassian" in host else ""
    hint = f" This {where} link" if where else " This link"
    raise BadReferenceError(
        f"{hint.strip()} names no ticket; open the ticket itself and copy its address "
        "(…/agent/tickets/123 or …/browse/OPS-42)"
    )


def _jira_key(text: str) -> TicketRef:
    found = _JIRA_KEY.match(text.upper())
    assert found is not None
    return TicketRef(JIRA, f"{found.group(1)}-{int(found.group(2))}")


@dataclass(frozen=True, slots=True)
class TicketLinks:
    """Where a person opens a ticket: the helpdesks' web addresses (None: unknown)."""

    zendesk_url: str | None = None
    """``https://acme.zendesk.com``."""
    jira_url: str | None = None
    """``https://acme.atlassian.net``."""

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> TicketLinks:
        """From the connectors' own settings: ``ZENDESK_URL`` or ``ZENDESK_SUBDOMAIN``, and
        ``JIRA_URL`` (only the addresses are read, never a credential)."""
        env = os.environ if environ is None else environ
        zendesk = (env.get("ZENDESK_URL") or "").strip().rstrip("/") or None
        subdomain = (env.get("ZENDESK_SUBDOMAIN") or "").strip().lower()
        if zendesk is None and subdomain:
            subdomain = subdomain.removeprefix("https://").removesuffix(".zendesk.com")
            zendesk = f"https://{subdomain.strip('/')}.zendesk.com"
        jira = (env.get("JIRA_URL") or "").strip().rstrip("/") or None
        return cls(zendesk, jira)

    def url(self, source: str, external_key: str, jira_key: str | None = None) -> str | None:
        """The ticket's page: ``…/agent/tickets/123``, ``…/browse/OPS-42`` (by the issue id
        when the key is not known)."""
        if source == ZENDESK and self.zendesk_url:
            return f"{self.zendesk_url}/agent/tickets/{quote(external_key)}"
        if source == JIRA and self.jira_url:
            if jira_key:
                return f"{self.jira_url}/browse/{quote(jira_key)}"
            return f"{self.jira_url}/secure/ViewIssue.jspa?id={quote(external_key)}"
        return None
