"""What ``/sla`` answers: the ticket card, the explanation, help and short notices (blocks)."""

from __future__ import annotations

from datetime import tzinfo

from bot.business_time import from_timestamp, merge_pauses, to_timestamp
from bot.explain import explain
from bot.policy import format_duration
from slabot.slack import ids
from slabot.slack.blocks import (
    Block,
    actions,
    button,
    context,
    divider,
    escape,
    fit,
    header,
    section,
    sections,
)
from slabot.slack.i18n import Catalog
from slabot.slack.store_access import TicketView
from slabot.slack.texts import (
    MAX_NAME,
    active_targets,
    assignee_text,
    commitment_name,
    due,
    helpdesk_text,
    priority_text,
    requester_text,
    rule,
    subject_text,
    target_name,
    when,
)

_MAX_CLOSED_DATES = 10


def ticket_buttons(t: Catalog, view: TicketView) -> Block:
    """Reclassify and, when the helpdesk's address is known, Open."""
    elements = [button(t("button.reclassify"), ids.RECLASSIFY, value=view.ref, style="primary")]
    if view.url:
        elements.append(button(t("button.open"), ids.OPEN, url=view.url))
    return actions(*elements, block_id=f"ticket:{view.ref}"[:255])


def card(t: Catalog, view: TicketView, zone: tzinfo | None) -> list[Block]:
    """The ticket at a glance: its subject, priority, plan, commitment, requester, group and
    assignee (``Unassigned`` flagged), each clock's due time and state."""
    decision = view.decision
    priority = priority_text(view)
    if decision.requested_priority and decision.requested_priority != decision.priority:
        priority = t("card.requested", priority=priority, requested=decision.requested_priority)
    fields = [
        t("card.priority", priority=escape(priority)),
        t("card.plan", plan=escape(decision.plan or t("card.no_plan"))),
        t("card.commitment", commitment=commitment_name(t, decision.commitment)),
        t("card.status", status=t(f"status.{view.status}")),
        t("card.requester", requester=requester_text(view) or t("card.unknown")),
        t(
            "card.group",
            group=helpdesk_text(view.queue, MAX_NAME) if view.queue else t("card.unknown"),
        ),
        t("card.assignee", assignee=assignee_text(t, view)),
    ]
    blocks: list[Block] = [
        header(t("card.title", ticket=view.label, priority=decision.priority)),
    ]
    quoted = subject_text(t, view)
    if quoted:
        blocks.append(section(quoted))
    blocks.append(section(t("card.policy", policy=escape(view.policy_title)), fields=fields))
    reclassified = view.ticket.reclassification
    if reclassified is not None:
        blocks.append(
            context(
                t(
                    "card.reclassified",
                    priority=reclassified.priority,
                    actor=escape(reclassified.actor),
                    reason=escape(reclassified.reason),
                )
            )
        )
    targets = active_targets(view)
    if not targets:
        blocks.append(section(t("card.no_targets")))
    for decided in targets:
        blocks.append(
            section(
                t(
                    "card.target",
                    target=target_name(t, decided.target),
                    due=due(t, decided, zone),
                    rule=rule(t, decided),
                )
            )
        )
    blocks.extend(action_notes(t, view))
    blocks.append(context(_zone_note(t, zone)))
    blocks.append(ticket_buttons(t, view))
    return blocks


def explanation(t: Catalog, view: TicketView, zone: tzinfo | None) -> list[Block]:
    """Why the due dates are what they are: per clock its rule, calendar, the open time
    counted, closed dates skipped and pauses; then the engine's full trace."""
    now = view.now
    blocks: list[Block] = [
        header(t("explain.title", ticket=view.label)),
        context(t("explain.as_of", policy=escape(view.policy_title), when=when(t, now, zone))),
        *(
            [context(t("explain.routed", rule=escape(view.routing_rule)))]
            if view.routing_rule
            else []
        ),
        section(
            t(
                "explain.priority",
                priority=escape(priority_text(view)),
                plan=escape(view.decision.plan or t("card.no_plan")),
                commitment=commitment_name(t, view.decision.commitment),
            )
        ),
    ]
    pauses = merge_pauses(
        (to_timestamp(b), None if e is None else to_timestamp(e)) for b, e in view.ticket.paused
    )
    paused_targets = view.policy.spec.clocks.paused_targets
    for decided in active_targets(view):
        if decided.calendar is None or decided.started_at is None:
            continue
        calendar = view.policy.calendar(decided.calendar, view.ticket)
        lines = [
            t("explain.target", target=target_name(t, decided.target), due=due(t, decided, zone)),
            t("explain.rule", rule=rule(t, decided), calendar=escape(calendar.describe())),
            t("explain.started", when=when(t, decided.started_at, zone)),
        ]
        start = to_timestamp(decided.started_at)
        end_at = decided.stopped_at or now
        end = to_timestamp(end_at)
        applied = pauses if decided.target in paused_targets else []
        counted = calendar.elapsed_ts(start, end, applied) if end > start else 0
        if decided.stopped_at is not None:
            lines.append(t("explain.stopped", when=when(t, decided.stopped_at, zone)))
        lines.append(t("explain.used", used=format_duration(max(counted, 0))))
        if decided.stopped_at is None and decided.due is not None:
            due_ts = to_timestamp(decided.due)
            if due_ts > end:
                ahead = calendar.elapsed_ts(end, due_ts, applied)
                lines.append(t("explain.scheduled", scheduled=format_duration(max(ahead, 0))))
            else:
                lines.append(t("explain.scheduled_none"))
        horizon = to_timestamp(decided.due) if decided.due else end
        closed = calendar.closed_dates_between(start, max(horizon, end))
        if closed:
            shown = "; ".join(
                f"{day:%Y-%m-%d} {escape(why)}" for day, why in closed[:_MAX_CLOSED_DATES]
            )
            if len(closed) > _MAX_CLOSED_DATES:
                shown += "; " + t("more", count=len(closed) - _MAX_CLOSED_DATES)
            lines.append(t("explain.closed", dates=shown))
        spans = [(b, e) for b, e in applied if b < max(horizon, end) and (e is None or e > start)]
        if spans:
            lines.append(
                t(
                    "explain.paused",
                    spans="; ".join(
                        t(
                            "explain.span",
                            start=when(t, from_timestamp(b), zone),
                            end=when(t, from_timestamp(e), zone)
                            if e is not None
                            else t("explain.now"),
                        )
                        for b, e in spans
                    ),
                )
            )
        blocks.extend(sections("\n".join(lines)))
    blocks.append(divider())
    blocks.append(context(t("explain.engine")))
    trace = escape(explain(view.ticket, view.policy, now))
    for chunk in _chunks(trace, 2900):
        blocks.append(section(f"```{chunk}```"))
    return fit(blocks, lambda n: t("explain.cut", count=n))


def action_notes(t: Catalog, view: TicketView) -> list[Block]:
    """What to do about the ticket's tags: the policy's note for each (``action_notes``),
    the bare tag only where the policy has none."""
    tags = view.decision.tags
    if not tags:
        return []
    notes = [view.policy.spec.action_note(tag) for tag in tags]
    blocks = [section(t("card.action", note=escape(note))) for note in notes if note]
    bare = [tag for tag, note in zip(tags, notes, strict=True) if not note]
    if bare:
        blocks.append(context(t("card.tags", tags=escape(", ".join(bare)))))
    return blocks


def help_blocks(t: Catalog) -> list[Block]:
    return [header(t("help.title")), *sections(t("help.body")), context(t("help.tickets"))]


def notice(text: str) -> list[Block]:
    """A short answer (usage, refusal, confirmation): one section."""
    return sections(text)


def _zone_note(t: Catalog, zone: tzinfo | None) -> str:
    return t("card.zone", zone=str(zone)) if zone is not None else t("card.zone_own")


def _chunks(text: str, size: int) -> list[str]:
    chunks, rest = [], text.rstrip("\n")
    while rest:
        if len(rest) <= size:
            chunks.append(rest)
            break
        cut_at = rest.rfind("\n", 0, size)
        cut_at = cut_at if cut_at > 0 else size
        chunks.append(rest[:cut_at])
        rest = rest[cut_at:].lstrip("\n")
    return chunks
