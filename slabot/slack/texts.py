"""Phrases built from a catalog and a decision: instants for a reader, targets, states, rules.

A reader with a known time zone (a direct message, an ephemeral card) gets instants written
out in that zone; a channel, read by many, gets Slack's ``<!date>`` token, which every
reader sees in their own zone, with the UTC text as its fallback.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo

from bot.engine import TargetDecision
from bot.policy import format_duration
from slabot.slack.blocks import escape, slack_date
from slabot.slack.i18n import Catalog
from slabot.slack.store_access import TicketView


def when(t: Catalog, instant: datetime, zone: tzinfo | None) -> str:
    """``Mon 23 Nov 14:15 CET`` in ``zone``; in a channel (no zone) a ``<!date>`` token."""
    if zone is not None:
        return t.instant(instant, zone)
    return slack_date(instant, t.instant(instant, UTC))


def target_name(t: Catalog, target: str) -> str:
    return t(f"target.{target}")


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
