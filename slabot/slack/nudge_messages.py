"""The nudge message: one per clock cycle, rewritten in place as the clock moves on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo

from slabot.slack import ids
from slabot.slack.blocks import (
    MAX_FALLBACK,
    Block,
    actions,
    button,
    context,
    cut,
    escape,
    link,
    section,
)
from slabot.slack.i18n import Catalog
from slabot.slack.store_access import TicketView
from slabot.slack.texts import (
    commitment_name,
    context_line,
    priority_text,
    target_name,
    when,
)


@dataclass(frozen=True, slots=True)
class NudgeSubject:
    """What a nudge message is about, and what happened to it."""

    nudge_id: int
    target: str
    percent: int
    """The threshold that first posted the message (75, or 100 for a breach)."""
    cycle_started_at: datetime
    snoozed_until: datetime | None = None
    snoozed_by: str | None = None
    snooze_reason: str | None = None
    reminder: bool = False
    to_assignee: bool = False
    queue: str | None = None
    breached: bool = False
    """The cycle's breach was reached (its notice owed): once the cycle ends, it ended late."""
    acks: tuple[tuple[str, datetime], ...] = ()
    """Who took the breach ("I'm on it", "Assign to me": Slack user ids) and when."""


@dataclass(frozen=True, slots=True)
class NudgeMessage:
    text: str
    """The notification and screen-reader text."""
    blocks: list[Block]
    closed: str | None
    """Why the message will not change any more (``met``, ``solved``, ``gone``), or None."""


def clock_outcome(
    view: TicketView | None, target: str, cycle_started_at: datetime, *, breached: bool = False
) -> str:
    """Where the nudged clock cycle stands now: ``gone`` (ticket no longer stored),
    ``solved``, ``met`` (met, no longer applies, or a new cycle began in time), ``late``
    (stopped after its due time, or a new cycle began after a ``breached`` one),
    ``breached`` or ``running`` (running or paused)."""
    if view is None:
        return "gone"
    if view.solved:
        return "solved"
    decided = view.decision.targets[target]
    if decided.started_at != cycle_started_at and decided.state != "none":
        # A new cycle began (an agent's update restarts the update clock): the nudged cycle
        # ended when it did. The view only knows the new cycle, so whether the old one had
        # breached comes from the caller; without it a breach notice was rewritten as "met".
        return "late" if breached else "met"
    if decided.state in ("met", "none"):
        return "met"
    if decided.stopped_at is not None:
        return "late"
    if decided.state == "breached":
        return "breached"
    return "running"


def nudge_message(
    t: Catalog,
    view: TicketView | None,
    subject: NudgeSubject,
    zone: tzinfo | None,
    label: str = "",
) -> NudgeMessage:
    """The message for the clock's current state; ``label`` names a ticket no longer stored."""
    outcome = clock_outcome(
        view, subject.target, subject.cycle_started_at, breached=subject.breached
    )
    target = target_name(t, subject.target)
    if view is None:
        text = t("nudge.gone", ticket=escape(label), target=target)
        return NudgeMessage(cut(text, MAX_FALLBACK), [section(text)], "gone")
    ticket = link(view.url, view.label)
    decided = view.decision.targets[subject.target]
    if outcome in ("met", "solved", "late"):
        key = f"nudge.{outcome}"
        text = t(key, ticket=ticket, target=target)
        blocks = [section(text), context(_summary(t, view), context_line(t, view))]
        return NudgeMessage(
            cut(_plain(t(key, ticket=view.label, target=target)), MAX_FALLBACK), blocks, outcome
        )
    due_at = decided.due
    if outcome == "breached" and due_at is not None:
        headline = t("nudge.breached", ticket=ticket, target=target, when=when(t, due_at, zone))
        fallback = t(
            "nudge.breached", ticket=view.label, target=target, when=t.instant(due_at, zone)
        )
    elif due_at is not None:
        headline = t(
            "nudge.threshold",
            ticket=ticket,
            target=target,
            percent=subject.percent,
            when=when(t, due_at, zone),
        )
        fallback = t(
            "nudge.threshold",
            ticket=view.label,
            target=target,
            percent=subject.percent,
            when=t.instant(due_at, zone),
        )
    else:
        headline = t("nudge.paused", ticket=ticket, target=target)
        fallback = t("nudge.paused", ticket=view.label, target=target)
    if subject.reminder:
        headline = t("nudge.reminder", message=headline)
        fallback = t("nudge.reminder", message=fallback)
    notes = [_summary(t, view), context_line(t, view)]
    if subject.to_assignee:
        notes.append(t("nudge.for_assignee"))
    elif subject.queue:
        notes.append(t("nudge.for_queue", queue=escape(subject.queue)))
    reclassified = view.ticket.reclassification
    if reclassified is not None:
        notes.append(
            t(
                "card.reclassified",
                priority=reclassified.priority,
                actor=escape(reclassified.actor),
                reason=escape(reclassified.reason),
            )
        )
    if subject.snoozed_until is not None and subject.snoozed_until > view.now:
        notes.append(
            t(
                "nudge.snoozed",
                until=when(t, subject.snoozed_until, zone),
                user=f"<@{subject.snoozed_by}>" if subject.snoozed_by else "?",
                reason=escape(subject.snooze_reason or ""),
            )
        )
    for user, at in subject.acks:
        notes.append(t("nudge.acked", user=f"<@{user}>", when=when(t, at, zone)))
    elements = []
    if outcome == "breached":
        # Who takes the breach: recorded, said in the thread, and re-announcements stop.
        nudge = str(subject.nudge_id)
        elements.append(button(t("button.ack"), ids.ACK, value=nudge, style="danger"))
        elements.append(button(t("button.assign"), ids.ASSIGN, value=nudge))
    elements.append(
        button(
            t("button.reclassify"),
            ids.RECLASSIFY,
            value=view.ref,
            style=None if outcome == "breached" else "primary",
        )
    )
    for action_id, hours in ids.SNOOZE_HOURS.items():
        elements.append(
            button(t("button.snooze", hours=hours), action_id, value=str(subject.nudge_id))
        )
    if view.url:
        elements.append(button(t("button.open"), ids.OPEN, url=view.url))
    blocks = [
        section(headline),
        context(*notes),
        actions(*elements, block_id=f"nudge:{subject.nudge_id}"),
    ]
    return NudgeMessage(cut(_plain(fallback), MAX_FALLBACK), blocks, None)


def _summary(t: Catalog, view: TicketView) -> str:
    return t(
        "nudge.summary",
        priority=escape(priority_text(view)),
        plan=escape(view.decision.plan or t("card.no_plan")),
        commitment=commitment_name(t, view.decision.commitment),
    )


def _plain(text: str) -> str:
    """The fallback text without mrkdwn emphasis or emoji codes."""
    return " ".join(
        word
        for word in text.replace("*", "").split()
        if not (word.startswith(":") and word.endswith(":"))
    )
