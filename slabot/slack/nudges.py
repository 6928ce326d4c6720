"""The nudge job: owe Slack a message for each threshold reached, once per clock cycle.

``run_nudges(store, clock, config)`` is a plain function, run every minute or so by the
service. For each configured threshold (75% and the breach by default, per target) it finds
the clocks that reached it and have no nudge row for it in their current cycle, and in one
transaction inserts the row and owes Slack the message (``nudge``, or ``breach_notice`` for
the breach, the same item ``TicketService.record_breaches`` owes). It also owes the updates
of messages already posted: a clock met or solved since (the message says so and loses its
buttons), reminders whose snooze has ended, and re-announcements of breaches nobody has
taken after ``renotify_minutes``. Nothing is sent here: the outbox's Slack
sender does that, so a Slack outage only delays messages.

A target counted in business hours is not nudged while its calendar is closed: the
threshold stays unnudged and is picked up by the first run after the calendar opens. A
threshold below the breach that is reached only after the breach (the service was down)
is recorded as superseded and not sent. While a nudge is snoozed, lower thresholds of the
same clock wait; a breach does not (it updates the message in place).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.engine import iso_z
from bot.policy import TARGETS
from slabot.slack.config import Nudges, SlackConfigError
from slabot.slack.nudge_messages import clock_outcome
from slabot.slack.store_access import SlackStore, TicketView
from slabot.store.breaches import BREACH, DueTarget

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

NUDGE = "nudge"
BREACH_NOTICE = "breach_notice"
"""Outbox kinds the Slack sender handles (``digest`` is the third)."""


@dataclass(slots=True)
class NudgeReport:
    """What one run owed Slack, and what it held back."""

    nudged: int = 0
    """Threshold messages owed (below the breach)."""
    breaches: int = 0
    """Breach notices owed."""
    closed_calendar: int = 0
    """Thresholds reached while their calendar is closed: left for a later run."""
    snoozed: int = 0
    superseded: int = 0
    """Thresholds reached after the breach (recorded, not sent)."""
    updates: int = 0
    """Messages owed an update because their clock was met or the ticket solved."""
    reminders: int = 0
    """Reminders owed after a snooze ended."""
    renotified: int = 0
    """Breaches nobody took, announced again (``slack.nudges.renotify_minutes``)."""


def check_thresholds(config: Nudges, marked: tuple[int, ...]) -> None:
    """Refuse thresholds the store does not mark (they would never be reached)."""
    for target in TARGETS:
        missing = [p for p in config.permilles(target) if p not in marked]
        if missing:
            shown = ", ".join(f"{p / 1000:g}" for p in missing)
            have = ", ".join(f"{p / 1000:g}" for p in marked)
            raise SlackConfigError(
                f"slack.nudges.thresholds.{target}: {shown} is not marked by the store "
                f"(marked: {have}); add it to the ticket service's thresholds and run "
                "slabot recompute, or remove it here"
            )


def run_nudges(store: SlackStore, clock: Clock, config: Nudges, *, batch: int = 200) -> NudgeReport:
    """Owe Slack the nudges, breach notices, updates and reminders due at ``clock()``."""
    report = NudgeReport()
    if not config.enabled:
        return report
    now = clock()
    by_permille: dict[int, list[str]] = {}
    for target in TARGETS:
        for permille in config.permilles(target):
            by_permille.setdefault(permille, []).append(target)
    for permille in sorted(by_permille, reverse=True):  # breaches first
        marks = store.unnudged(permille, by_permille[permille], now, batch)
        views = store.views({m.ticket_id for m in marks}, now)
        for mark in marks:
            _nudge(store, mark, permille, views.get(mark.ticket_id), now, report)
    _follow_up(store, now, report)
    if config.renotify_minutes:
        _renotify(store, now, timedelta(minutes=config.renotify_minutes), report)
    return report


def _nudge(
    store: SlackStore,
    mark: DueTarget,
    permille: int,
    view: TicketView | None,
    now: datetime,
    report: NudgeReport,
) -> None:
    percent = permille // 10
    if view is None:
        return  # unreadable (logged): its marks wait until its policy is loaded again
    outcome = clock_outcome(view, mark.target, mark.cycle_started_at)
    if outcome not in ("running", "breached"):
        store.record_nudge(mark, percent, now, owe=None, note={"skipped": outcome})
        return
    if permille < BREACH and outcome == "breached":
        store.record_nudge(mark, percent, now, owe=None, note={"skipped": "breached"})
        report.superseded += 1
        return
    if not view.calendar_open(mark.target, now):
        report.closed_calendar += 1
        return
    cycle = int(mark.cycle_started_at.timestamp())
    if permille < BREACH:
        message = store.message(mark.ticket_id, mark.target, mark.cycle_started_at)
        if message is not None and message.snoozed_until and message.snoozed_until > now:
            report.snoozed += 1
            return
        payload = {
            "event": "threshold",
            "ticket": mark.ticket,
            "target": mark.target,
            "threshold": percent,
            "at": iso_z(mark.at),
            "cycle_started_at": iso_z(mark.cycle_started_at),
        }
        key = f"slack:nudge:{mark.ticket}:{mark.target}:{percent}:{cycle}"
        if store.record_nudge(mark, percent, now, owe=(NUDGE, payload, key)):
            report.nudged += 1
        return
    payload = {
        "ticket": mark.ticket,
        "target": mark.target,
        "due": iso_z(mark.at),
        "cycle_started_at": iso_z(mark.cycle_started_at),
    }
    # The key TicketService.record_breaches uses: either may owe the notice, never both.
    key = f"slack:breach:{mark.ticket}:{mark.target}:{cycle}"
    if store.record_nudge(mark, percent, now, owe=(BREACH_NOTICE, payload, key)):
        report.breaches += 1


def _follow_up(store: SlackStore, now: datetime, report: NudgeReport) -> None:
    """Owe the updates of posted messages whose clock was met, and the reminders due."""
    messages = store.open_messages(now)
    views = store.views({m.ticket_id for m in messages}, now)
    for message in messages:
        view = views.get(message.ticket_id)
        breached = breach_recorded(
            store, message.ticket_id, message.target, message.cycle_started_at
        )
        outcome = clock_outcome(view, message.target, message.cycle_started_at, breached=breached)
        if outcome in ("met", "late", "solved", "gone"):
            key = f"slack:nudge-update:{message.nudge_id}:{outcome}"
            store.owe(message.ticket_id, NUDGE, _update(message.nudge_id, outcome), key, now)
            store.close_message(message.nudge_id, outcome)
            report.updates += 1
            continue
        until = message.snoozed_until
        if until is None or until > now or message.payload.get("reminded"):
            continue
        if view is not None and not view.calendar_open(message.target, now):
            continue
        key = f"slack:nudge-reminder:{message.nudge_id}:{int(until.timestamp())}"
        store.owe(message.ticket_id, NUDGE, _update(message.nudge_id, "reminder"), key, now)
        store.mark_reminded(message.nudge_id)
        report.reminders += 1


def _renotify(store: SlackStore, now: datetime, every: timedelta, report: NudgeReport) -> None:
    """Owe a re-announcement of each breach announced ``every`` ago or more that nobody has
    taken ("I'm on it", "Assign to me") and that is still breached, while its calendar is
    open; the owed item's key is the previous announcement, so a retried run owes it once."""
    breaches = [b for b in store.announced_breaches(now) if b.notified_at is not None]
    due = [b for b in breaches if b.notified_at is not None and b.notified_at + every <= now]
    views = store.views({b.ticket_id for b in due}, now)
    for breach in due:
        view = views.get(breach.ticket_id)
        last = breach.notified_at
        if view is None or last is None:
            continue
        if clock_outcome(view, breach.target, breach.cycle_started_at) != "breached":
            continue
        if not view.calendar_open(breach.target, now):
            continue
        key = f"slack:breach-renotify:{breach.nudge_id}:{int(last.timestamp())}"
        store.owe(breach.ticket_id, NUDGE, _update(breach.nudge_id, "renotify"), key, now)
        store.mark_notified(breach.nudge_id, now)
        report.renotified += 1


def breach_recorded(
    store: SlackStore, ticket_id: int, target: str, cycle_started_at: datetime
) -> bool:
    """Whether this clock cycle's breach was reached (its notice owed, not skipped)."""
    breach = store.nudge_for(ticket_id, target, BREACH // 10, cycle_started_at)
    return breach is not None and "skipped" not in breach.payload


def owe_refresh(store: SlackStore, ticket_id: int, why: str, now: datetime) -> int:
    """Owe an in-place update of every open nudge message of a ticket (after a
    reclassification or a snooze); returns how many."""
    count = 0
    for message in store.open_messages(now, ticket_id=ticket_id):
        key = f"slack:nudge-update:{message.nudge_id}:{why}:{int(now.timestamp())}"
        if store.owe(ticket_id, NUDGE, _update(message.nudge_id, why), key, now):
            count += 1
    return count


def _update(nudge_id: int, event: str) -> dict[str, object]:
    return {"event": event, "nudge_id": nudge_id}
