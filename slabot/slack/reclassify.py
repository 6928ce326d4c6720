"""Reclassifying from Slack (the modal and ``/sla reclassify``): validate, store, explain.

The store's ``TicketService.reclassify`` does the work (audit entry with who, from, to and
why, origin ``slack``; recomputed clocks; the helpdesk write-back and internal note owed
through the outbox). This module turns its refusals into messages in the agent's language
that say what to do, tied to the modal field they are about, and owes in-place updates of
the ticket's nudge messages.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from bot.compiled import Policy
from bot.engine import ProductionOnlyError, ReasonRequiredError, UnknownPriorityError
from bot.errors import ReclassificationError, SlabotError
from slabot.slack import ids
from slabot.slack.blocks import escape
from slabot.slack.i18n import Catalog
from slabot.slack.nudges import owe_refresh
from slabot.slack.store_access import SlackStore, TicketView
from slabot.store.services import ReclassifyResult, TicketService, UnknownTicketError

log = logging.getLogger(__name__)

ORIGIN = "slack"


@dataclass(frozen=True, slots=True)
class Outcome:
    """A reclassification's result as the agent reads it."""

    ok: bool
    message: str
    block: str | None = None
    """The modal field the refusal is about (``priority``, ``reason``), if any."""
    result: ReclassifyResult | None = None


def actor_name(user_id: str, email: str | None) -> str:
    """Who reclassified, as the audit and the helpdesk note show it."""
    return f"{email} (Slack {user_id})" if email else f"Slack user {user_id}"


def reclassify(
    tickets: TicketService,
    store: SlackStore,
    t: Catalog,
    view: TicketView,
    priority: str,
    reason: str,
    actor: str,
    now: datetime,
    request_key: str | None = None,
) -> Outcome:
    """Reclassify ``view``'s ticket; refusals come back as localized messages, not errors.

    ``request_key`` names the Slack request (the modal's view id, the command's trigger id):
    a request Slack delivers twice is applied once."""
    try:
        result = tickets.reclassify(
            view.source,
            view.external_key,
            priority,
            actor,
            reason,
            ORIGIN,
            request_key=request_key,
        )
    except UnknownPriorityError:
        return Outcome(
            False,
            t(
                "reclassify.error.unknown_priority",
                priority=escape(priority),
                policy=escape(view.policy.name),
                choices=", ".join(view.policy.levels),
            ),
            ids.PRIORITY_BLOCK,
        )
    except ReasonRequiredError:
        return Outcome(False, t("reclassify.error.reason"), ids.REASON_BLOCK)
    except ProductionOnlyError:
        return Outcome(False, _production_only(t, view, priority), ids.PRIORITY_BLOCK)
    except UnknownTicketError:
        return Outcome(False, t("ticket.unknown", ticket=view.label))
    except (ReclassificationError, SlabotError) as error:
        log.error("slack: reclassifying %s failed: %s", view.ref, error)
        return Outcome(False, t("error.internal"))
    log.info(
        "slack: %s reclassified %s from %s to %s%s",
        actor,
        view.ref,
        result.previous_priority,
        priority,
        " (a repeated request: already applied)" if result.duplicate else "",
    )
    if not result.duplicate:
        owe_refresh(store, result.ticket_id, "reclassified", now)
    return Outcome(
        True,
        t(
            "reclassify.done",
            ticket=view.label,
            old=result.previous_priority or "-",
            new=result.decision.priority,
            actor=escape(actor),
        ),
        result=result,
    )


def _production_only(t: Catalog, view: TicketView, priority: str) -> str:
    """Which rule refused the priority, and the priorities the agent may choose instead."""
    policy = view.policy
    rules = policy.spec.classification
    environment = view.ticket.environment
    if (
        rules.environment
        and environment is not None
        and environment.lower() not in rules.environment.production_values
        and priority in policy.levels
    ):
        return t(
            "reclassify.error.production_only",
            priority=escape(priority),
            environment=escape(environment),
            choices=_at_most(policy, rules.environment.cap),
        )
    stage_rule = rules.product_stage
    stage = view.ticket.product_stage or ""
    cap = stage_rule.cap if stage_rule and stage_rule.cap else policy.levels[-1]
    return t(
        "reclassify.error.stage",
        priority=escape(priority),
        stage=escape(stage),
        choices=_at_most(policy, cap),
    )


def _at_most(policy: Policy, cap: str) -> str:
    return ", ".join(p for p in policy.levels if policy.severity(p) >= policy.severity(cap))
