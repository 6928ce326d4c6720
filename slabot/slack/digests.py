"""Scheduled digests: what is breached, due soon or waiting on the customer too long, per channel.

``digest(store, clock, channel)`` is a plain function returning the message's blocks (None
when there is nothing to report and the channel skips empty digests). ``run_digest`` owes
Slack the message through the outbox (a Slack outage delays it, never drops it), and
``register_digests`` only registers one APScheduler job per configured digest, with a
``CronTrigger`` in the digest's time zone; the service runs the scheduler. The compliance
summaries are scheduled posts too: ``owe_scheduled_post`` and ``register_scheduled_posts``
serve both.

Tickets are ordered by urgency: every breach first (most severe priority first, then the
longest overdue), then the clocks due soon (most severe, then the soonest), then the tickets
waiting on the customer; a section per state and priority. Each line links to the ticket
and names its subject, requester (and organization), group, plan, commitment and owner (the
assignee's name or e-mail address, or a flagged "Unassigned").
Every instant, the digest's own time included, is a ``<!date>`` token that each reader sees
in their own time zone: one zone per reader, never two for one instant on a page.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from bot.engine import iso_z
from slabot.slack.blocks import (
    MAX_BLOCKS,
    MAX_FALLBACK,
    Block,
    context,
    cut,
    escape,
    header,
    link,
    section,
)
from slabot.slack.config import ComplianceSummary, Digest, SlackConfig
from slabot.slack.i18n import Catalog, catalog
from slabot.slack.sender import DIGEST
from slabot.slack.store_access import SlackStore, TicketView
from slabot.slack.texts import (
    MAX_NAME,
    assignee_text,
    commitment_name,
    helpdesk_text,
    priority_text,
    requester_text,
    subject_text,
    target_name,
    when,
)

Clock = Callable[[], datetime]
Post = TypeVar("Post", Digest, ComplianceSummary)
"""A scheduled post to a channel: its ``channel``, ``schedule``, ``timezone`` and trigger."""

_COMMITMENT_ORDER = {"sla": 0, "slo": 1}
_KIND_ORDER = {"breached": 0, "due": 1, "paused": 2}
_MAX_LINES_PER_SECTION = 12
_MAX_SECTION_TEXT = 2900
_MAX_SUBJECT = 80
"""A digest line's subject is cut shorter than a card's: many lines share a section."""
_BUSINESS_HORIZON_DAYS = 21
"""How far ahead (elapsed) due clocks are read before their business hours are counted."""


@dataclass(slots=True)
class Entry:
    """One line of a digest: a ticket, and its clocks in that state."""

    kind: str
    """``breached``, ``due`` or ``paused``."""
    view: TicketView
    targets: list[str]
    at: datetime
    """The earliest due instant (breached, due) or when the ticket started waiting."""


def digest(store: SlackStore, clock: Clock, channel: Digest) -> list[Block] | None:
    """The digest for ``channel`` as of ``clock()``; None when empty and ``when_empty: skip``."""
    now = clock()
    t = catalog(channel.language)
    entries = _entries(store, now, channel)
    blocks: list[Block] = [
        header(t("digest.title")),
        context(t("digest.as_of", when=when(t, now, None))),
    ]
    if not entries:
        if channel.when_empty == "skip":
            return None
        return [
            section(
                t(
                    "digest.empty",
                    hours=_hours(channel.due_within_business_hours),
                    paused=_hours(channel.paused_longer_than_hours),
                )
            )
        ]
    shown = entries[: channel.max_tickets]
    counts = {
        kind: sum(1 for e in entries if e.kind == kind) for kind in ("breached", "due", "paused")
    }
    blocks.append(
        context(
            t(
                "digest.counts",
                breached=counts["breached"],
                due=counts["due"],
                paused=counts["paused"],
                hours=_hours(channel.due_within_business_hours),
                paused_hours=_hours(channel.paused_longer_than_hours),
            )
        )
    )
    for group, lines in _groups(t, shown):
        title = group
        chunk: list[str] = []
        for line in lines:
            size = len(title) + sum(len(x) + 1 for x in chunk) + len(line) + 1
            if chunk and (len(chunk) >= _MAX_LINES_PER_SECTION or size > _MAX_SECTION_TEXT):
                blocks.append(section("\n".join([title, *chunk])))
                title, chunk = t("digest.continued", group=group), []
            chunk.append(line)
        blocks.append(section("\n".join([title, *chunk])))
    left_out = len(entries) - len(shown)
    if len(blocks) > MAX_BLOCKS - 1:
        left_out += sum(text_lines(b) for b in blocks[MAX_BLOCKS - 2 :])
        blocks = blocks[: MAX_BLOCKS - 2]
    if left_out:
        blocks.append(context(t("digest.more", count=left_out)))
    return blocks


def text_lines(block: Block) -> int:
    """How many ticket lines a digest section holds (its first line is the group title)."""
    text = (block.get("text") or {}).get("text") or ""
    return max(len(text.splitlines()) - 1, 0)


def run_digest(store: SlackStore, clock: Clock, channel: Digest) -> bool:
    """The scheduled job's body: owe Slack the digest; False when skipped (empty) or owed
    already for this minute."""
    now = clock()
    blocks = digest(store, clock, channel)
    if blocks is None:
        return False
    t = catalog(channel.language)
    text = t("digest.fallback", when=when(t, now, None))
    slot = str(iso_z(now.replace(second=0, microsecond=0)))
    return owe_scheduled_post(store, "digest", channel, slot, blocks, text, now)


def owe_scheduled_post(
    store: SlackStore,
    kind: str,
    post: Digest | ComplianceSummary,
    slot: str,
    blocks: list[Block],
    text: str,
    now: datetime,
) -> bool:
    """Owe Slack ``blocks`` (``text``: the notification's, cut to Slack's limit) in
    ``post.channel``, once per channel, schedule and ``slot`` (a retried or doubled run owes
    it once: the key is ``slack:<kind>:<channel>:<schedule's hash>:<slot>``); False when
    owed already."""
    schedule = hashlib.sha256(post.schedule.encode()).hexdigest()[:8]
    key = f"slack:{kind}:{post.channel}:{schedule}:{slot}"
    payload: dict[str, Any] = {
        "channel": post.channel,
        "blocks": blocks,
        "text": cut(text, MAX_FALLBACK),
    }
    return store.owe(None, DIGEST, payload, key, now)


def job_id(channel: Digest) -> str:
    return f"slack-digest:{channel.channel}:{channel.schedule.replace(' ', '_')}"


def register_digests(
    scheduler: Any, config: SlackConfig, run: Callable[[Digest], object]
) -> list[str]:
    """Add one job per configured digest to an APScheduler 3 scheduler (not started here);
    returns the job ids. ``run(channel)`` is the job (``run_digest`` bound to the store and
    clock). A digest whose time passed while the service was down by less than an hour is
    still sent once; older ones are skipped."""
    return register_scheduled_posts(scheduler, "digest", config.digests, job_id, run, 3600)


def register_scheduled_posts(
    scheduler: Any,
    what: str,
    posts: Sequence[Post],
    job_id: Callable[[Post], str],
    run: Callable[[Post], object],
    misfire_grace_seconds: int,
) -> list[str]:
    """Add one job per post to an APScheduler 3 scheduler (not started here), named "Slack
    <what> for <channel> (<schedule> <zone>)": ``run(post)`` at each time of its trigger,
    one run at a time, a time missed by up to ``misfire_grace_seconds`` still run once;
    returns the job ids."""
    added = []
    for post in posts:
        identifier = job_id(post)
        scheduler.add_job(
            run,
            trigger=post.trigger(),
            args=[post],
            id=identifier,
            name=f"Slack {what} for {post.channel} ({post.schedule} {post.timezone})",
            replace_existing=True,
            misfire_grace_time=misfire_grace_seconds,
            coalesce=True,
            max_instances=1,
        )
        added.append(identifier)
    return added


def _entries(store: SlackStore, now: datetime, channel: Digest) -> list[Entry]:
    horizon = channel.due_within_business_hours * 3600
    breached = store.breached(now)
    due = store.due_before(
        now, now + timedelta(hours=channel.due_within_business_hours, days=_BUSINESS_HORIZON_DAYS)
    )
    paused_ids = store.paused_tickets()
    views = store.views({m.ticket_id for m in (*breached, *due)} | set(paused_ids), now)
    found: dict[tuple[str, int], Entry] = {}

    def add(kind: str, view: TicketView, target: str | None, at: datetime) -> None:
        entry = found.setdefault((kind, view.ticket_id), Entry(kind, view, [], at))
        if target is not None and target not in entry.targets:
            entry.targets.append(target)
        entry.at = min(entry.at, at)

    for mark in breached:
        view = views.get(mark.ticket_id)
        if view is not None:
            add("breached", view, mark.target, mark.at)
    for mark in due:
        view = views.get(mark.ticket_id)
        if view is not None and view.open_seconds(mark.target, now, mark.at) <= horizon:
            add("due", view, mark.target, mark.at)
    limit = timedelta(hours=channel.paused_longer_than_hours)
    for ticket_id in paused_ids:
        view = views.get(ticket_id)
        since = view.paused_since if view is not None else None
        if view is not None and since is not None and now - since >= limit:
            add("paused", view, None, since)
    return sorted(found.values(), key=_order)


def _order(entry: Entry) -> tuple[Any, ...]:
    """Most urgent first: breaches, then due soon, then waiting; within each the most severe
    priority (policy by policy, when the digest spans several), then the earliest instant
    (the longest overdue, the soonest due), then commitments with service credits."""
    view = entry.view
    return (
        _KIND_ORDER[entry.kind],
        view.policy.severity(view.decision.priority),
        view.policy.name,
        entry.at,
        _COMMITMENT_ORDER.get(view.decision.commitment or "", 2),
        view.label,
    )


def _groups(t: Catalog, entries: list[Entry]) -> list[tuple[str, list[str]]]:
    groups: list[tuple[str, list[str]]] = []
    current: tuple[Any, ...] | None = None
    # Several policies (routing): each level's label is its policy's, so say whose it is.
    several = len({entry.view.policy.name for entry in entries}) > 1
    for entry in entries:
        view = entry.view
        key = (entry.kind, view.policy.name, view.decision.priority)
        if key != current:
            current = key
            label = priority_text(view)
            if several:
                label = f"{label} · {view.policy_title}"
            groups.append(
                (
                    t(
                        "digest.group",
                        kind=t(f"digest.kind.{entry.kind}"),
                        priority=escape(label),
                    ),
                    [],
                )
            )
        groups[-1][1].append(_line(t, entry))
    return groups


def _line(t: Catalog, entry: Entry) -> str:
    view = entry.view
    ticket = link(view.url, view.label)
    who = t(
        "digest.who",
        plan=escape(view.decision.plan or t("card.no_plan")),
        commitment=commitment_name(t, view.decision.commitment),
        owner=assignee_text(t, view),
    )
    about = [subject_text(t, view, _MAX_SUBJECT)]
    requester = requester_text(view)
    if requester:
        about.append(t("context.requester", requester=requester))
    if view.queue:
        about.append(t("context.group", group=helpdesk_text(view.queue, MAX_NAME)))
    who = " · ".join([*(part for part in about if part), who])
    if entry.kind == "paused":
        line = t("digest.line.paused", ticket=ticket, when=when(t, entry.at, None))
    else:
        line = t(
            f"digest.line.{entry.kind}",
            ticket=ticket,
            target=", ".join(target_name(t, target) for target in entry.targets),
            when=when(t, entry.at, None),
        )
    return f"{line} · {who}"


def _hours(value: float) -> str:
    return f"{value:g}"
