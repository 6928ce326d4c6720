"""Why a ticket's due dates are what they are, written for a person."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, tzinfo

from bot.business_time import OpenInterval, Pause, from_timestamp, to_timestamp
from bot.compiled import Policy
from bot.engine import TargetDecision, evaluate, iso_z
from bot.metrics import builtin_definitions
from bot.policy import format_duration
from bot.ticket import Ticket

_MAX_LISTED_INTERVALS = 40
_STOPS = {
    "first_response": "stops at the first public agent reply (or when solved)",
    "restoration": "stops when the ticket is solved",
    "next_update": "restarts at every public agent update; stops when solved",
}


def _stops(name: str, policy: Policy) -> str:
    """How a metric's clock runs, for people: the classic three in words, the others from
    their definition (docs/metrics.md)."""
    if name in _STOPS:
        return _STOPS[name]
    definition = {**builtin_definitions(policy.spec.clocks), **policy.spec.metrics}[name]
    return (
        f"starts at {', '.join(definition.start)}; stops at {', '.join(definition.stop)} "
        f"(cycle: {definition.cycle})"
    )


def explain(ticket: Ticket, policy: Policy, now: datetime) -> str:
    """A readable account of the rules applied, the calendars and the open time counted."""
    decision = evaluate(ticket, policy, now)
    levels = {p.name: p.label for p in policy.spec.priorities}
    lines = [
        f"Ticket {ticket.id} under policy {policy.name}"
        + (f" ({policy.spec.title})" if policy.spec.title else "")
        + f", as of {iso_z(now)}",
        "",
        f"Priority {decision.priority} {levels[decision.priority]}",
    ]
    lines += [f"  - {note}" for note in decision.notes]
    if decision.plan is None:
        unknown = decision.unknown_plan
        lines.append(f"Plan: {unknown!r}, not in the policy" if unknown else "Plan: none given")
    else:
        alias = f" (from {ticket.plan!r})" if ticket.plan and ticket.plan != decision.plan else ""
        lines.append(f"Plan {decision.plan}{alias}, commitment {decision.commitment}")
    lines.append(f"Tags: {', '.join(decision.tags) if decision.tags else 'none'}")
    for tag in decision.tags:
        note = policy.spec.action_note(tag)
        if note:
            lines.append(f"  - to do ({tag}): {note}")
    for target in decision.targets.values():
        lines.append("")
        lines += _explain_target(target, ticket, policy, now)
    return "\n".join(lines) + "\n"


def _explain_target(
    target: TargetDecision, ticket: Ticket, policy: Policy, now: datetime
) -> list[str]:
    title = target.target.replace("_", " ")
    start = target.started_ts
    if target.state == "none" or target.calendar is None or start is None:
        return [f"{title}: no target for this priority and plan"]
    calendar = policy.calendar(target.calendar, ticket)
    zone = calendar.zone
    due = target.due
    due_text = f"due {_local(due, zone)} ({iso_z(due)})" if due else "no due instant while paused"
    lines = [
        f"{title}: {due_text}, {target.state}",
        f"  target: {target.rule} ({calendar.describe()})",
        f"  clock: started {_local(from_timestamp(start), zone)}; {_stops(target.target, policy)}",
    ]
    if target.stopped_at:
        lines.append(f"  stopped {_local(target.stopped_at, zone)}")
    end = target.due_ts if target.due_ts is not None else target.stopped_ts
    if end is None:
        return [*lines, "  paused now: the clock resumes when the customer answers"]
    pauses = target.pauses  # exactly the pauses the engine counted for this clock
    # Two different spans, never one: what the clock has used (start to now, or to its stop)
    # and what is scheduled from now to the due instant. One list from start to due read as
    # "counted" when half of it lay in the future.
    now_ts = to_timestamp(now)
    used_end = target.stopped_ts if target.stopped_ts is not None else now_ts
    used = _minus_pauses(calendar.open_intervals(start, max(used_end, start)), pauses)
    of = f" of {format_duration(target.target_seconds)}" if target.target_seconds else ""
    used_title = "open time used" + ("" if target.stopped_ts is not None else " so far")
    lines.append(f"  {used_title}: {format_duration(_total(used))}{of}")
    lines += _interval_lines(used, zone)
    if target.stopped_ts is None and target.due_ts is not None:
        if target.due_ts > now_ts:
            ahead = _minus_pauses(calendar.open_intervals(now_ts, target.due_ts), pauses)
            lines.append(f"  open time scheduled until due: {format_duration(_total(ahead))}")
            lines += _interval_lines(ahead, zone)
        else:
            lines.append("  open time scheduled until due: none (the due time has passed)")
    end = max(end, used_end)
    closed = calendar.closed_dates_between(start, end)
    if closed:
        lines.append("  closed dates skipped: " + "; ".join(f"{d} {why}" for d, why in closed))
    applied = [(b, e) for b, e in pauses if b < end and (e is None or e > start)]
    if applied:
        spans = [
            f"{_local(from_timestamp(b), zone)} to "
            + (_local(from_timestamp(e), zone) if e is not None else "now")
            for b, e in applied
        ]
        lines.append("  paused (waiting on the customer): " + "; ".join(spans))
    return lines


def _total(intervals: Sequence[OpenInterval]) -> int:
    return sum(interval.end - interval.start for interval in intervals)


def _interval_lines(intervals: Sequence[OpenInterval], zone: tzinfo) -> list[str]:
    """One line per open interval with the running total (the first ones, then a count)."""
    lines = []
    total = 0
    for index, interval in enumerate(intervals):
        total += interval.end - interval.start
        if index < _MAX_LISTED_INTERVALS:
            begin = datetime.fromtimestamp(interval.start, zone)
            finish = datetime.fromtimestamp(interval.end, zone)
            finish_format = "%H:%M" if finish.date() == begin.date() else "%a %Y-%m-%d %H:%M"
            lines.append(
                f"    {begin:%a %Y-%m-%d %H:%M}-{finish.strftime(finish_format)}  "
                f"{format_duration(interval.end - interval.start):>7}  "
                f"(total {format_duration(total)})"
            )
    if len(intervals) > _MAX_LISTED_INTERVALS:
        lines.append(f"    ... {len(intervals) - _MAX_LISTED_INTERVALS} more intervals")
    return lines


def _minus_pauses(intervals: list[OpenInterval], pauses: Sequence[Pause]) -> list[OpenInterval]:
    if not pauses:
        return intervals
    result = []
    for interval in intervals:
        pieces = [interval]
        for begin, end in pauses:
            stop = end if end is not None else interval.end
            next_pieces = []
            for piece in pieces:
                if stop <= piece.start or begin >= piece.end:
                    next_pieces.append(piece)
                    continue
                if piece.start < begin:
                    next_pieces.append(OpenInterval(piece.start, begin))
                if stop < piece.end:
                    next_pieces.append(OpenInterval(stop, piece.end))
            pieces = next_pieces
        result.extend(pieces)
    return result


def _local(instant: datetime, zone: tzinfo) -> str:
    return f"{instant.astimezone(zone):%a %Y-%m-%d %H:%M %Z}"
