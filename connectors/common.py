"""What every helpdesk connector shares that is not its own room: agents' priorities.

- ``AgentReclassifications`` applies the priority changes agents make in a helpdesk, each
  exactly once.

The rest has its own room: webhook signatures in ``connectors.signatures``, the intake
queue in ``connectors.intake``, the request budget in ``connectors.polling``, settings and
``Secret`` in ``slabot.configuration`` (shared with Slack).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from datetime import datetime
from typing import Any

from slabot.store import queries

log = logging.getLogger(__name__)


# --- agents' reclassifications -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentPriorityChange:
    """A priority an agent (not slabot, not the requester) set in a helpdesk, in the terms
    ``AgentReclassifications`` applies it in."""

    change_id: str
    """The helpdesk's id of the change (audit event, changelog entry): it counts once."""
    at: datetime
    actor: str
    asked: str
    """The helpdesk's priority the agent set (empty: cleared)."""
    priority: str | None
    """slabot's priority for it (None: not in the connector's priority mapping)."""


@dataclass(frozen=True, slots=True, eq=False)
class AgentReclassifications:
    """Applies the priority changes agents make in one helpdesk, each exactly once.

    A change is an audited reclassification (``TicketService.reclassify`` with the change's
    request key, one transaction: nothing is half done if the process dies, and a retry
    finds it); one the policy refuses (or whose priority the connector does not map) is
    recorded as refused with an internal note owed (``refuse_reclassification``), the
    policy's priority being owed back by the ingest since the helpdesk shows another.
    ``legacy_source``: changes applied before request keys were recorded as deliveries of
    that source, and still count as applied.
    """

    tickets: Any
    """The connector's ``TicketService``."""
    _: KW_ONLY
    source: str
    helpdesk: str
    """How people name the helpdesk in messages: ``Zendesk``, ``Jira``."""
    key_prefix: str
    legacy_source: str
    priorities: Mapping[str, str]
    priorities_setting: str
    helpdesk_name: Callable[[str], str | None]

    def apply(self, external_key: str, changes: Sequence[AgentPriorityChange]) -> list[str]:
        """Apply the changes not applied or refused yet, in order; what happened to each
        (its priority, or ``refused <asked>``)."""
        done = self._done(external_key, changes)
        outcomes = []
        for change in changes:
            if change.change_id in done:
                continue
            outcome = self._reclassify(external_key, change)
            if outcome is not None:
                outcomes.append(outcome)
        return outcomes

    def request_key(self, change: AgentPriorityChange) -> str:
        return f"{self.key_prefix}:{change.change_id}"

    def refusal_key(self, change: AgentPriorityChange) -> str:
        """The refusal's event key in the ticket's history."""
        return f"{self.key_prefix}:{change.change_id}:priority"

    def _done(self, external_key: str, changes: Sequence[AgentPriorityChange]) -> set[str]:
        """The ids of the changes already applied or refused: the ticket's history holds
        their request key or their refusal's event key, or a legacy delivery records them.
        A shortcut only: the reclassification and the refusal check their own key again
        under the ticket's lock."""
        from slabot.store.reclassify import reclassify_event_key

        if not changes:
            return set()
        engine, retry = self.tickets.engine, self.tickets.retry
        keys = queries.known_event_keys(engine, self.source, external_key, retry=retry)
        legacy = queries.recorded_deliveries(
            engine,
            self.legacy_source,
            [f"{external_key}:{change.change_id}" for change in changes],
            retry=retry,
        )
        return {
            change.change_id
            for change in changes
            if reclassify_event_key(self.request_key(change)) in keys
            or self.refusal_key(change) in keys
            or f"{external_key}:{change.change_id}" in legacy
        }

    def _reclassify(self, external_key: str, change: AgentPriorityChange) -> str | None:
        """Apply one change once; what happened (None: it already was)."""
        from bot.errors import ReclassificationError

        if change.priority is None:
            mapping = ", ".join(f"{k}: {v}" for k, v in self.priorities.items())
            shown = repr(change.asked) if change.asked else "(none)"
            why = (
                f"{self.helpdesk} priority {shown} is not one of "
                f"{self.priorities_setting} ({mapping})"
            )
            if not self._refuse(external_key, change, why):
                return None
            return f"refused {change.asked or 'none'}"
        try:
            result = self.tickets.reclassify(
                self.source,
                external_key,
                change.priority,
                change.actor,
                f"set the priority to {change.asked} in {self.helpdesk}",
                self.source,
                request_key=self.request_key(change),
            )
        except ReclassificationError as refusal:
            if not self._refuse(external_key, change, str(refusal)):
                return None
            return f"refused {change.priority}"
        if result.duplicate:
            return None
        log.info(
            "%s:%s reclassified to %s by %s",
            self.source,
            external_key,
            change.priority,
            change.actor,
        )
        return change.priority

    def _refuse(self, external_key: str, change: AgentPriorityChange, why: str) -> bool:
        """Record the refusal and owe the helpdesk an internal note saying why. False: it
        was recorded before."""
        if not self.tickets.refuse_reclassification(
            self.source,
            external_key,
            asked=change.asked,
            priority=change.priority,
            actor=change.actor,
            origin=self.source,
            why=why,
            at=change.at,
            event_key=self.refusal_key(change),
            helpdesk_name=self.helpdesk_name,
        ):
            return False
        log.warning(
            "%s:%s: %s's priority %s refused: %s",
            self.source,
            external_key,
            change.actor,
            change.asked or "(none)",
            why,
        )
        return True
