"""Phrases built from a catalog and a decision: instants for a reader, targets, states, rules.

A reader with a known time zone (a direct message, an ephemeral card) gets instants written
out in that zone; a channel, read by many, gets Slack's ``<!date>`` token, which every
reader sees in their own zone, with the UTC text as its fallback.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo

from bot.engine import TargetDecision
from bot.policy import format_duration
from slabot.slack.blocks import cut, escape, slack_date
from slabot.slack.i18n import Catalog
from slabot.slack.store_access import TicketView


def when(t: Catalog, instant: datetime, zone: tzinfo | None) -> str:
    """``Mon 23 Nov 14:15 CET`` in ``zone``; in a channel (no zone) a ``<!date>`` token."""
    if zone is not None:
        return t.instant(instant, zone)
    return slack_date(instant, t.instant(instant, UTC))


def target_name(t: Catalog, target: str) -> str:
    """A metric's name for people: the catalog's for a built-in one, else a policy's own
    metric by its name (``vendor_hold``: "vendor hold")."""
    key = f"target.{target}"
    return t(key) if key in t.messages else target.replace("_", " ")


def state_name(t: Catalog, state: str) -> str:
    return t(f"state.{state}")


def commitment_name(t: Catalog, commitment: str | None) -> str:
    if commitment in ("sla", "slo"):
        return t(f"commitment.{commitment}")
    return t("commitment.none")


def rule(t: Catalog, decided: TargetDecision) -> str:
    """``4h on calendar customer`` in the reader's language."""
    if decided.calendar is None:
        return t("state.none")
    if decided.target_seconds is None:
        return t("rule.next_business_day", calendar=decided.calendar)
    if decided.calendar == "24x7":
        return t("rule.elapsed", duration=format_duration(decided.target_seconds))
    return t(
        "rule.business", duration=format_duration(decided.target_seconds), calendar=decided.calendar
    )


def due(t: Catalog, decided: TargetDecision, zone: tzinfo | None) -> str:
    """``running, due Mon 23 Nov 14:15 CET`` / ``paused`` / ``met``."""
    state = state_name(t, decided.state)
    if decided.due is None:
        return state if decided.state != "paused" else t("due.paused")
    return t("due.state_at", state=state, when=when(t, decided.due, zone))


def priority_text(view: TicketView) -> str:
    """``P2 High`` (the policy's own label)."""
    labels = {level.name: level.label for level in view.policy.spec.priorities}
    return f"{view.decision.priority} {labels.get(view.decision.priority, '')}".strip()


def plain_name(text: str) -> str:
    """A value from a helpdesk or a policy, safe in mrkdwn."""
    return escape(text)


def active_targets(view: TicketView) -> list[TargetDecision]:
    """The clocks that apply to the ticket, in report order."""
    return [d for d in view.decision.targets.values() if d.state != "none"]


MAX_SUBJECT = 150
"""Characters of a subject shown in Slack: enough to recognise the ticket, short enough
that a digest of 30 tickets stays within a section's 3,000 characters."""
MAX_NAME = 80
"""Characters of a requester's, organization's, group's or assignee's name shown in Slack."""


def helpdesk_text(text: str, limit: int) -> str:
    """A value typed by a customer or an agent (subject, names), safe in mrkdwn: cut to
    ``limit`` characters first (so no ``&amp;`` is split), then escaped."""
    return escape(cut(" ".join(text.split()), limit))


def subject_text(t: Catalog, view: TicketView, limit: int = MAX_SUBJECT) -> str | None:
    """``“Printer on fire”`` (quoted the reader's way), or None when the ticket has none."""
    if view.subject is None:
        return None
    return t("context.subject", subject=helpdesk_text(view.subject, limit))


def requester_text(view: TicketView) -> str | None:
    """``Ada Lovelace (Acme)``, ``Ada Lovelace``, ``Acme``, or None (neither is known)."""
    requester = helpdesk_text(view.requester, MAX_NAME) if view.requester else None
    organization = helpdesk_text(view.organization, MAX_NAME) if view.organization else None
    if requester and organization:
        return f"{requester} ({organization})"
    return requester or organization


def assignee_text(t: Catalog, view: TicketView) -> str:
    """The assignee's name (or e-mail address), or the flag that nobody is assigned."""
    name = view.assignee_name or view.assignee_email
    return helpdesk_text(name, MAX_NAME) if name else t("context.unassigned")


def context_line(t: Catalog, view: TicketView, *, subject: bool = True) -> str:
    """One line saying what the ticket is about and who has it: ``“Printer on fire” · From
    Ada Lovelace (Acme) · Group Support · Assignee Bob Agent`` (``Unassigned`` flagged)."""
    parts: list[str] = []
    quoted = subject_text(t, view) if subject else None
    if quoted:
        parts.append(quoted)
    requester = requester_text(view)
    if requester:
        parts.append(t("context.requester", requester=requester))
    if view.queue:
        parts.append(t("context.group", group=helpdesk_text(view.queue, MAX_NAME)))
    if view.unassigned:
        parts.append(t("context.unassigned"))
    else:
        parts.append(t("context.assignee", assignee=assignee_text(t, view)))
    return " · ".join(parts)
