"""What the dashboard shows, as data: open tickets by next breach, and one ticket's clocks.

``open_tickets(engine, store, now, filters, after)`` evaluates one page of the open tickets,
nearest to a breach first (``tickets.next_due_at``; tickets with no running clock follow),
read a page at a time from an index so a page costs what it shows however many tickets are
stored, and returns one ``Row`` each: its worst state (``breached``, ``at_risk`` past 75% of
a target, ``running``, ``paused``, ``met``), the next due instant, and the fields the filters
and the search use.
The filtering is done here, on the server, so a filtered address (``/?state=breached&q=acme``)
is a bookmark and the page's auto-refresh asks for the same rows again. Each row also says
what the ticket is about: its subject, requester and organization, group and assignee name.

``ticket_clocks(view)`` explains each clock of one ticket as a timeline: the spans of open
time counted towards the target, the pauses (waiting on the customer) and the closed
dates (public holidays) skipped, with the start, the 75% point, the due instant, the stop
and ``now`` marked, each at its position along the clock's span.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import Boolean, ColumnElement, Engine, Select, exists, literal_column, or_, select

from bot.business_time import OpenInterval, to_timestamp
from bot.engine import TargetDecision, threshold_instant
from bot.policy import TARGETS, format_duration
from bot.ticket import SOLVED_STATUSES
from slabot.slack.store_access import SlackStore, TicketView
from slabot.store.models import StoredDecision, StoredTicket, TargetMark
from slabot.store.search import NAMED, SEARCHED, like_pattern, search_text, shown_texts

PAGE_SIZE = 50
"""Rows a page shows; the dashboard links to the next page."""
OPTION_WINDOW = 500
"""The filters offer the values of this many tickets first in the list (and the page's)."""
SCAN_LIMIT = 2_000
"""Tickets read at most for one page when a filter no index answers narrows it (search,
priority, plan, a state): the page ends early, its next page goes on from there."""
AT_RISK_FRACTION = 0.75
AT_RISK_PERMILLE = 750
"""The threshold mark of ``AT_RISK_FRACTION`` (``slabot.store.breaches.to_permille``)."""
STATE_ORDER = ("breached", "at_risk", "running", "paused", "met", "none")
"""Worst first: a ticket shows the worst state of its clocks."""
FILTER_STATES = ("breached", "at_risk", "running", "paused")
"""The states the dashboard's state filter offers (an open ticket is rarely ``met``)."""
TARGET_NAMES = {
    "first_response": "First response",
    "restoration": "Restoration",
    "next_update": "Next update",
    "next_reply": "Next reply",
    "agent_work": "Agent work time",
    "requester_wait": "Requester wait time",
}
"""The built-in metrics' names; a policy's own metric is shown by its name."""


@dataclass(frozen=True, slots=True)
class Clock:
    """One clock of a row: its state at ``now`` and when it is due."""

    target: str
    state: str
    due: datetime | None


@dataclass(frozen=True, slots=True)
class Row:
    """One open ticket on the dashboard."""

    source: str
    external_key: str
    label: str
    url: str | None
    policy: str
    policy_title: str
    """The policy's title (its name when it has none)."""
    priority: str
    requested_priority: str | None
    plan: str | None
    assignee: str | None
    """The assignee's e-mail address, lower-case (``shown["assignee_email"]``)."""
    assignee_name: str | None
    queue: str | None
    """The Zendesk group or the Jira project (``shown["queue"]``): the group filter."""
    subject: str | None
    requester: str | None
    organization: str | None
    searchable: str
    """Every text the search matches, case-folded and joined (see ``SEARCHED``)."""
    status: str
    state: str
    """The worst state of its clocks (see ``STATE_ORDER``)."""
    next_due: datetime | None
    """The earliest due instant of a running or breached clock."""
    next_target: str | None
    clocks: tuple[Clock, ...]
    unknown_plan: str | None = None
    """The plan the ticket names when its policy does not know it (shown with a marker)."""

    @property
    def ref(self) -> str:
        return f"{self.source}:{self.external_key}"

    @property
    def unassigned(self) -> bool:
        """Nobody is assigned in the helpdesk: the list and the ticket page flag it."""
        return self.assignee is None and self.assignee_name is None


@dataclass(frozen=True, slots=True)
class Filters:
    """The dashboard's filters; None: any. ``q``: every word must appear somewhere in the
    ticket's key, subject, requester, organization, group or assignee (any case)."""

    source: str | None = None
    priority: str | None = None
    plan: str | None = None
    assignee: str | None = None
    state: str | None = None
    group: str | None = None
    unassigned: bool = False
    q: str | None = None

    @property
    def active(self) -> bool:
        """Whether any filter narrows the list (the empty list then says so)."""
        return any(
            (self.source, self.priority, self.plan, self.assignee, self.state, self.group)
        ) or bool(self.unassigned or self.words)

    @property
    def words(self) -> list[str]:
        return (self.q or "").casefold().split()

    def keep(self, row: Row) -> bool:
        words = self.words
        return (
            (self.source is None or row.source == self.source)
            and (self.priority is None or row.priority == self.priority)
            and (self.plan is None or row.plan == self.plan)
            and (self.assignee is None or (row.assignee or "") == self.assignee)
            and (self.state is None or row.state == self.state)
            and (self.group is None or row.queue == self.group)
            and (not self.unassigned or row.assignee is None)
            and all(word in row.searchable for word in words)
        )


@dataclass(frozen=True, slots=True)
class Board:
    """One page of rows, and the values each filter offers (see ``_options``)."""

    rows: list[Row]
    options: dict[str, list[str]] = field(default_factory=dict)
    unknown_plans: dict[str, int] = field(default_factory=dict)
    """Plan -> tickets of this page whose policy does not know it (the banner)."""
    next: str | None = None
    """The next page's ``after=`` (None: this is the last page)."""
    first_page: bool = True
    cut_short: bool = False
    """The page ended at ``SCAN_LIMIT`` tickets read, before it was full (a rare search)."""
    scanned: int = 0
    """Tickets read from the list's index for this page."""


def open_tickets(
    engine: Engine,
    store: SlackStore,
    now: datetime,
    filters: Filters | None = None,
    after: str | None = None,
    page_size: int = PAGE_SIZE,
) -> Board:
    """One page of the open tickets, evaluated at ``now``, filtered: by next due instant
    (breached first, then soonest; ticket id breaking ties), then the tickets with no running
    clock by id. ``after`` is the previous page's ``Board.next`` (None: the first page).

    The page is read in that order from an index of ``tickets`` (``next_due_at``, led by the
    group or the assignee when filtered by one), the other filters narrowing the same walk:
    the state by ``next_due_at`` against ``now``, source, priority and plan in SQL, the search
    on the stored texts before anything is evaluated. Each candidate is then evaluated and
    kept by ``Filters.keep``, so a page shows exactly what the filters say. At most
    ``SCAN_LIMIT`` candidates are read per page: a rare search ends its page early, and its
    next page goes on from there."""
    chosen = filters or Filters()
    start = Position.parse(after)
    words = chosen.words
    found: list[tuple[Position, Row]] = []
    cursor, scanned, exhausted, rounds = start, 0, False, 0
    while len(found) <= page_size and scanned < SCAN_LIMIT:
        # As many as the page still needs, then twice as many each time: a filter that
        # keeps few of the candidates reads more of them at once.
        want = (page_size + 1 - len(found)) * 2**rounds
        rounds += 1
        asked = min(want, SCAN_LIMIT - scanned)
        batch = _candidates(engine, chosen, now, cursor, asked)
        if not batch:
            exhausted = True
            break
        scanned += len(batch)
        cursor = batch[-1].position
        wanted = [c for c in batch if all(w in c.searchable for w in words)]
        views = store.views([c.ticket_id for c in wanted], now)
        for candidate in wanted:
            view = views.get(candidate.ticket_id)
            if view is None:
                continue
            row = row_of(view, now, candidate.shown)
            if chosen.keep(row):
                found.append((candidate.position, row))
        if len(batch) < asked:  # the list ends here: no need to ask again
            exhausted = True
            break
    following: Position | None = None
    if len(found) > page_size:
        following = found[page_size - 1][0]
        found = found[:page_size]
    elif not exhausted and cursor is not None:
        following = cursor  # the scan limit ended the page: go on from the last one read
    rows = [row for _position, row in found]
    unknown: dict[str, int] = {}
    for row in rows:
        if row.unknown_plan is not None:
            unknown[row.unknown_plan] = unknown.get(row.unknown_plan, 0) + 1
    return Board(
        rows=rows,
        options=_options(engine, rows),
        unknown_plans=dict(sorted(unknown.items())),
        next=following.token() if following is not None else None,
        first_page=start is None,
        cut_short=following is not None and len(rows) < page_size,
        scanned=scanned,
    )


@dataclass(frozen=True, slots=True)
class Position:
    """Where a page ends in the list's order: a ticket's ``next_due_at`` (None: the part
    with no running clock, ordered by id) and its id. ``token()`` is the address's ``after=``."""

    due: datetime | None
    ticket_id: int

    def token(self) -> str:
        if self.due is None:
            return f"n{self.ticket_id}"
        micros = int(self.due.timestamp()) * 1_000_000 + self.due.microsecond
        return f"d{micros}.{self.ticket_id}"

    @classmethod
    def parse(cls, token: str | None) -> Position | None:
        """The position in ``token``; None (the first page) for anything else: an edited
        address shows the list from its start instead of an error."""
        if not token:
            return None
        try:
            if token[0] == "n":
                return cls(None, int(token[1:]))
            if token[0] == "d":
                micros, _, ticket_id = token[1:].partition(".")
                seconds, micro = divmod(int(micros), 1_000_000)
                due = datetime.fromtimestamp(seconds, UTC).replace(microsecond=micro)
                return cls(due, int(ticket_id))
        except (ValueError, OverflowError, OSError):
            return None
        return None


@dataclass(frozen=True, slots=True)
class Candidate:
    """A ticket read from the list's index, before it is evaluated."""

    position: Position
    ticket_id: int
    shown: Mapping[str, Any]
    searchable: str


def _candidates(
    engine: Engine, chosen: Filters, now: datetime, after: Position | None, limit: int
) -> list[Candidate]:
    """Up to ``limit`` tickets after ``after`` in the list's order, narrowed in SQL by the
    filters an index or a stored column answers (a superset of what ``Filters.keep``
    keeps: the rows are evaluated and kept by it afterwards)."""
    narrow: list[ColumnElement[bool]] = []
    if chosen.source is not None:
        narrow.append(StoredTicket.source == chosen.source)
    if chosen.group is not None:
        narrow.append(StoredTicket.queue == chosen.group)
    if chosen.assignee is not None:
        narrow.append(StoredTicket.assignee_email == chosen.assignee)
    elif chosen.unassigned:
        narrow.append(StoredTicket.assignee_email.is_(None))
    if chosen.priority is not None:
        narrow.append(StoredDecision.priority == chosen.priority)
    if chosen.plan is not None:
        narrow.append(StoredDecision.plan == chosen.plan)
    # Breached: some clock's due instant has passed, so the earliest one has. Running or at
    # risk: a clock runs, so there is a due instant, not yet passed. Paused, met or without a
    # target: no clock runs, so none.
    due_part = chosen.state not in ("paused", "met", "none")
    rest_part = chosen.state not in ("breached", "at_risk", "running")
    if chosen.state == "breached":
        narrow.append(StoredTicket.next_due_at <= now)
    elif chosen.state in ("at_risk", "running"):
        narrow.append(StoredTicket.next_due_at > now)
    if chosen.state == "running":
        # A clock past its 75% mark is at risk (or breached), not running: leave out the
        # tickets with such a mark (with no 0.75 threshold configured there is none).
        narrow.append(
            ~exists().where(
                TargetMark.ticket_id == StoredTicket.id,
                TargetMark.threshold_permille == AT_RISK_PERMILLE,
                TargetMark.at <= now,
            )
        )
    if chosen.state == "paused":
        # A paused clock is held by the pause the ticket is in now: its last span is open.
        narrow.append(_waiting_now(engine.dialect.name))
    narrow.extend(_searched(engine.dialect.name, chosen.words))
    columns = (StoredTicket.id, StoredTicket.next_due_at, *_SEARCH_COLUMNS)
    found: list[Candidate] = []
    with engine.connect() as connection:
        if due_part and (after is None or after.due is not None):
            query = select(*columns).where(StoredTicket.next_due_at.is_not(None), *narrow)
            if after is not None and after.due is not None:
                query = query.where(
                    StoredTicket.next_due_at >= after.due,
                    or_(StoredTicket.next_due_at > after.due, StoredTicket.id > after.ticket_id),
                )
            query = query.order_by(StoredTicket.next_due_at, StoredTicket.id).limit(limit)
            found.extend(_candidate(row) for row in connection.execute(_joined(query, chosen)))
        if rest_part and len(found) < limit:
            query = select(*columns).where(
                StoredTicket.next_due_at.is_(None),
                StoredTicket.status.not_in(SOLVED_STATUSES),
                *narrow,
            )
            if after is not None and after.due is None:
                query = query.where(StoredTicket.id > after.ticket_id)
            query = query.order_by(StoredTicket.id).limit(limit - len(found))
            found.extend(_candidate(row) for row in connection.execute(_joined(query, chosen)))
    return found


def _waiting_now(dialect: str) -> ColumnElement[bool]:
    """The ticket's last pause (``tickets.paused``) has no end: it waits on the customer."""
    if dialect == "postgresql":
        return literal_column("(tickets.paused -> -1 -> 1) = 'null'::jsonb", Boolean)
    return literal_column("json_type(tickets.paused, '$[#-1][1]') = 'null'", Boolean)


TRIGRAM = 3
"""pg_trgm indexes runs of three characters: a shorter word finds nothing in its index."""


def _searched(dialect: str, words: Sequence[str]) -> list[ColumnElement[bool]]:
    """The search in SQL on PostgreSQL, where ``tickets.search_text`` has a trigram index
    (revision 0010): each word a ``LIKE`` of the stored text, the same test as
    ``Filters.keep``'s, so the walk reads only the tickets found. Not when every word is
    shorter than a trigram (the index would answer every ticket), nor on SQLite (no such
    index): the words are then matched on the candidates read, ``SCAN_LIMIT`` at most."""
    if dialect != "postgresql" or all(len(word) < TRIGRAM for word in words):
        return []
    return [StoredTicket.search_text.like(like_pattern(word), escape="\\") for word in words]


_SEARCH_COLUMNS = (
    StoredTicket.source,
    StoredTicket.external_key,
    StoredTicket.shown,
    StoredTicket.search_text,
)


def _joined(query: Select[Any], chosen: Filters) -> Select[Any]:
    if chosen.priority is None and chosen.plan is None:
        return query
    return query.join(StoredDecision, StoredDecision.ticket_id == StoredTicket.id)


def _candidate(row: Any) -> Candidate:
    ticket_id, due, source, key, shown, searchable = row
    shown = shown if isinstance(shown, Mapping) else {}
    if searchable is None:  # written with ``shown`` since revision 0010, which fills it
        searchable = search_text(source, key, shown)
    return Candidate(Position(due, ticket_id), ticket_id, shown, searchable)


def _options(engine: Engine, rows: Sequence[Row]) -> dict[str, list[str]]:
    """What each filter offers: the values of the ``OPTION_WINDOW`` tickets first in the
    list and of the page's rows (read from stored columns: nothing is evaluated)."""
    columns = (
        StoredTicket.source,
        StoredDecision.priority,
        StoredDecision.plan,
        StoredTicket.assignee_email,
        StoredTicket.queue,
    )
    window: list[Any] = []
    with engine.connect() as connection:
        for part in (StoredTicket.next_due_at.is_not(None), StoredTicket.next_due_at.is_(None)):
            if len(window) >= OPTION_WINDOW:
                break
            window.extend(
                connection.execute(
                    select(*columns)
                    .join(StoredDecision, StoredDecision.ticket_id == StoredTicket.id)
                    .where(part, StoredTicket.status.not_in(SOLVED_STATUSES))
                    .order_by(StoredTicket.next_due_at, StoredTicket.id)
                    .limit(OPTION_WINDOW - len(window))
                )
            )
    values: list[tuple[str | None, ...]] = [tuple(w) for w in window]
    values += [(r.source, r.priority, r.plan, r.assignee, r.queue) for r in rows]
    names = ("source", "priority", "plan", "assignee", "group")
    options: dict[str, list[str]] = {}
    for index, name in enumerate(names):
        options[name] = sorted({text for v in values if (text := v[index])})
    return {**options, "state": list(FILTER_STATES)}


def shown_of(engine: Engine, ticket_ids: Iterable[int]) -> dict[int, Mapping[str, Any]]:
    """What the connector says the helpdesk shows for each ticket (``tickets.shown``): the
    search's subject, requester and organization, which ``TicketView`` does not carry."""
    wanted = sorted(set(ticket_ids))
    found: dict[int, Mapping[str, Any]] = {}
    with engine.connect() as connection:
        for start in range(0, len(wanted), 500):
            batch = wanted[start : start + 500]
            for ticket_id, shown in connection.execute(
                select(StoredTicket.id, StoredTicket.shown).where(StoredTicket.id.in_(batch))
            ):
                found[ticket_id] = shown if isinstance(shown, Mapping) else {}
    return found


def row_of(view: TicketView, now: datetime, shown: Mapping[str, Any] | None = None) -> Row:
    """A ticket's dashboard row, its clocks judged at ``now``; ``shown`` (the stored
    ``tickets.shown``) adds the subject, requester and organization when a connector keeps
    them."""
    shown = shown or {}
    decision = view.decision
    clocks = tuple(
        Clock(name, _state(view, decision.targets[name], now), decision.targets[name].due)
        for name in TARGETS
    )
    live = [c for c in clocks if c.state in ("breached", "at_risk", "running") and c.due]
    nearest = min(live, key=lambda c: c.due or now) if live else None
    states = [c.state for c in clocks]
    worst = min(states, key=STATE_ORDER.index) if states else "none"
    return Row(
        source=view.source,
        external_key=view.external_key,
        label=view.label,
        url=view.url,
        policy=view.policy.name,
        policy_title=view.policy_title,
        priority=decision.priority,
        requested_priority=decision.requested_priority,
        plan=decision.plan,
        assignee=view.assignee_email,
        assignee_name=_named(shown.get("assignee_name")) or _named(shown.get("assignee")),
        queue=view.queue,
        subject=_named(shown.get("subject")),
        requester=_named(shown.get("requester_name")) or _named(shown.get("requester")),
        organization=_named(shown.get("organization_name")) or _named(shown.get("organization")),
        searchable=_searchable(view, shown),
        status=view.status,
        state=worst,
        next_due=nearest.due if nearest else None,
        next_target=nearest.target if nearest else None,
        clocks=clocks,
        unknown_plan=decision.unknown_plan,
    )


def _named(value: Any) -> str | None:
    """A shown value as one display string: a string, or an object's name (or e-mail)."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, Mapping):
        for key in NAMED:
            text = value.get(key)
            if isinstance(text, str) and text.strip():
                return text.strip()
    return None


def _searchable(view: TicketView, shown: Mapping[str, Any]) -> str:
    texts = [view.label, view.ref, view.external_key, view.assignee_email or "", view.queue or ""]
    for key in SEARCHED:
        texts.extend(shown_texts(shown.get(key)))
    return "\n".join(texts).casefold()


def _state(view: TicketView, target: TargetDecision, now: datetime) -> str:
    if target.state != "running":
        return target.state
    risk = threshold_instant(
        view.ticket, view.policy, view.decision, target.target, AT_RISK_FRACTION, now
    )
    return "at_risk" if risk is not None and risk <= now else "running"


# --- one ticket's clocks -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Span:
    """A stretch of a timeline: open time ``counted`` (or still ``ahead`` before the due
    instant), a ``pause``, a ``closed`` date."""

    kind: str
    start: datetime
    end: datetime
    left: float
    """Where it starts along the timeline, in percent."""
    width: float
    label: str


@dataclass(frozen=True, slots=True)
class Marker:
    """A point of a timeline: ``start``, ``at_risk`` (75%), ``due``, ``stop``, ``now``."""

    kind: str
    at: datetime
    left: float
    label: str


@dataclass(frozen=True, slots=True)
class Timeline:
    """One clock explained."""

    target: str
    title: str
    state: str
    rule: str
    calendar: str | None
    zone: str | None
    due: datetime | None
    started: datetime | None
    stopped: datetime | None
    counted: str
    """Open time counted so far (to the due instant, the stop or now), as ``3h 30m``."""
    spans: list[Span]
    markers: list[Marker]
    intervals: list[tuple[datetime, datetime, str]]
    """The open intervals counted, with their running total (the pages show each instant
    in the reader's zone; ``zone`` is the calendar's, named as its property)."""
    closed_dates: list[tuple[date, str]]
    pauses: list[tuple[datetime, datetime | None]]
    note: str | None = None


_MAX_SPANS = 400


def ticket_clocks(view: TicketView) -> list[Timeline]:
    """Each clock of the ticket as a timeline, as of ``view.now``: the classic three, then
    every other metric the policy reports (docs/metrics.md)."""
    return [_timeline(view, target) for target in view.decision.targets.values()]


def _timeline(view: TicketView, target: TargetDecision) -> Timeline:
    now = view.now
    title = TARGET_NAMES.get(target.target) or target.target.replace("_", " ").capitalize()
    state = _state(view, target, now)
    start = target.started_ts
    if target.state == "none" or target.calendar is None or start is None:
        return Timeline(
            target.target, title, state, target.rule, None, None, None, None, None, "-",
            [], [], [], [], [], note="no target for this priority and plan",
        )  # fmt: skip
    calendar = view.policy.calendar(target.calendar, view.ticket)
    zone = calendar.zone
    now_ts = to_timestamp(now)
    # The timeline runs from the clock's start to the later of its due instant and its
    # stop (or now, while it runs); open time is counted up to the stop (or now).
    counted_to = target.stopped_ts if target.stopped_ts is not None else max(now_ts, start)
    horizon_end = max(counted_to, target.due_ts or counted_to, start + 1)

    def left(ts: int) -> float:
        return round(100.0 * (ts - start) / (horizon_end - start), 3)

    pauses = list(target.pauses)
    counted = _minus_pauses(calendar.open_intervals(start, counted_to), pauses)
    total = 0
    intervals: list[tuple[datetime, datetime, str]] = []
    spans: list[Span] = []
    for interval in counted:
        total += interval.end - interval.start
        intervals.append(
            (
                datetime.fromtimestamp(interval.start, zone),
                datetime.fromtimestamp(interval.end, zone),
                format_duration(total),
            )
        )
        if len(spans) < _MAX_SPANS:
            spans.append(_span("counted", interval.start, interval.end, left, zone, "open time"))
    if target.stopped_ts is None and target.due_ts is not None and target.due_ts > counted_to:
        # The open time still ahead before the due instant.
        for interval in _minus_pauses(calendar.open_intervals(counted_to, target.due_ts), pauses):
            if len(spans) < _MAX_SPANS:
                spans.append(
                    _span("ahead", interval.start, interval.end, left, zone, "open time ahead")
                )
    closed = calendar.closed_dates_between(start, horizon_end)
    for day, why in closed:
        begin = datetime(day.year, day.month, day.day, tzinfo=zone)
        finish = begin + timedelta(days=1)
        first, last = max(to_timestamp(begin), start), min(to_timestamp(finish), horizon_end)
        if last > first:
            spans.append(_span("closed", first, last, left, zone, f"closed: {why}"))
    shown_pauses: list[tuple[datetime, datetime | None]] = []
    for begin_ts, end_ts in pauses:
        stop = end_ts if end_ts is not None else horizon_end
        first, last = max(begin_ts, start), min(stop, horizon_end)
        shown_pauses.append(
            (
                datetime.fromtimestamp(begin_ts, zone),
                None if end_ts is None else datetime.fromtimestamp(end_ts, zone),
            )
        )
        if last > first:
            spans.append(_span("pause", first, last, left, zone, "waiting on the customer"))
    markers = [_marker("start", start, left, zone, "started")]
    risk = threshold_instant(
        view.ticket, view.policy, view.decision, target.target, AT_RISK_FRACTION, now
    )
    if risk is not None and to_timestamp(risk) <= horizon_end:
        markers.append(_marker("at_risk", to_timestamp(risk), left, zone, "75%"))
    if target.due_ts is not None:
        markers.append(_marker("due", target.due_ts, left, zone, "due"))
    if target.stopped_ts is not None:
        markers.append(_marker("stop", target.stopped_ts, left, zone, "stopped"))
    elif now_ts <= horizon_end:
        markers.append(_marker("now", now_ts, left, zone, "now"))
    return Timeline(
        target=target.target,
        title=title,
        state=state,
        rule=target.rule,
        calendar=calendar.describe(),
        zone=str(zone),
        due=target.due,
        started=target.started_at,
        stopped=target.stopped_at,
        counted=format_duration(total) if total else "0m",
        spans=spans,
        markers=markers,
        intervals=intervals,
        closed_dates=closed,
        pauses=shown_pauses,
    )


def _span(
    kind: str, start: int, end: int, left: Callable[[int], float], zone: tzinfo, label: str
) -> Span:
    begin, finish = datetime.fromtimestamp(start, zone), datetime.fromtimestamp(end, zone)
    position = left(start)
    width = max(left(end) - position, 0.15)
    return Span(kind, begin, finish, position, width, label)


def _marker(kind: str, ts: int, left: Callable[[int], float], zone: tzinfo, label: str) -> Marker:
    return Marker(kind, datetime.fromtimestamp(ts, zone), left(ts), label)


def _minus_pauses(
    intervals: Iterable[OpenInterval], pauses: Sequence[tuple[int, int | None]]
) -> list[OpenInterval]:
    """The open intervals with the paused stretches cut out."""
    result: list[OpenInterval] = []
    for interval in intervals:
        pieces = [interval]
        for begin, end in pauses:
            stop = end if end is not None else interval.end
            kept = []
            for piece in pieces:
                if stop <= piece.start or begin >= piece.end:
                    kept.append(piece)
                    continue
                if piece.start < begin:
                    kept.append(OpenInterval(piece.start, begin))
                if stop < piece.end:
                    kept.append(OpenInterval(stop, piece.end))
            pieces = kept
        result.extend(pieces)
    return result
