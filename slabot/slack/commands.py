"""``/sla`` arguments: what the agent asked for, or which usage message to show. Pure.

``/sla TICKET`` (card), ``/sla explain TICKET``, ``/sla reclassify TICKET PRIORITY REASON...``,
``/sla help``. A ticket is ``ZD-123``, a Zendesk URL, a Jira key (``OPS-42``) or a Jira URL.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from slabot.slack.references import BadReferenceError, TicketRef, parse_ticket_ref

_HELP_WORDS = frozenset({"", "help", "?", "aide", "aiuto", "pomoc"})


@dataclass(frozen=True, slots=True)
class Card:
    ref: TicketRef


@dataclass(frozen=True, slots=True)
class Explain:
    ref: TicketRef


@dataclass(frozen=True, slots=True)
class Reclassify:
    ref: TicketRef
    priority: str
    reason: str


@dataclass(frozen=True, slots=True)
class Help:
    pass


@dataclass(frozen=True, slots=True)
class Usage:
    """Bad arguments: ``problem`` is a catalog key (``usage.<problem>``) with its params."""

    problem: str
    params: dict[str, str] = field(default_factory=dict)


Command = Card | Explain | Reclassify | Help | Usage


def parse_command(text: str) -> Command:
    """What ``/sla`` was asked.

    >>> parse_command("ZD-12")
    Card(ref=TicketRef(source='zendesk', key='12'))
    >>> parse_command("reclassify OPS-4 p2 region down")
    Reclassify(ref=TicketRef(source='jira', key='OPS-4'), priority='P2', reason='region down')
    >>> parse_command("reclassify OPS-4")
    Usage(problem='reclassify', params={})
    """
    words = text.split()
    if not words or words[0].lower() in _HELP_WORDS:
        return Help() if len(words) <= 1 else Usage("help_extra")
    verb = words[0].lower()
    if verb == "explain":
        if len(words) != 2:
            return Usage("explain")
        return _with_ref(words[1], Explain)
    if verb == "reclassify":
        if len(words) < 4:
            return Usage("reclassify")
        found = _ref(words[1])
        if isinstance(found, Usage):
            return found
        return Reclassify(found, words[2].upper(), " ".join(words[3:]))
    if len(words) == 1:
        return _with_ref(words[0], Card)
    return Usage("unknown", {"given": _shown(words[0])})


def _ref(word: str) -> TicketRef | Usage:
    try:
        return parse_ticket_ref(word)
    except BadReferenceError:
        return Usage("ticket", {"given": _shown(word)})


def _with_ref(word: str, make: type[Card] | type[Explain]) -> Command:
    found = _ref(word)
    return found if isinstance(found, Usage) else make(found)


def _shown(word: str) -> str:
    return word if len(word) <= 60 else word[:59] + "…"
