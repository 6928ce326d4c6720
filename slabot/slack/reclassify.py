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
from bot.engine import ReasonRequiredError, UnknownPriorityError
from bot.errors import ReclassificationError, SlabotError
from slabot.slack import ids
from slabot.slack.blocks import escape
from slabot.slack.i18n import Catalog
from slabot.slack.nudges import owe_refresh
from slabot.slack.store_access import SlackStore, TicketView
from slabot.store.errors import UnknownTicketError
from slabot.store.reclassify import ReclassifyResult
from slabot.store.services import TicketService

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
    except UnknownTicketError:
        return Outcome(False, t("ticket.unknown", ticket=view.label))
    except ReclassificationError as error:
        # A cap of the policy (production only, product stage): say which, and what to choose.
        message = _capped(t, view, priority) or escape(str(error))
        return Outcome(False, message, ids.PRIORITY_BLOCK)
    except SlabotError as error:
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


def _capped(t: Catalog, view: TicketView, priority: str) -> str | None:
    """Which of the policy's caps refuses ``priority`` for this ticket, and the priorities
    the agent may choose instead; None when neither does (the engine's message is shown)."""
    policy = view.policy
    if priority not in policy.levels:
        return None
    rules = policy.spec.classification
    environment = view.ticket.environment
    env_rule = rules.environment
    if (
        env_rule
        and environment is not None
        and environment.lower() not in env_rule.production_values
        and policy.severity(priority) < policy.severity(env_rule.cap)
    ):
        return t(
            "reclassify.error.production_only",
            priority=escape(priority),
            environment=escape(environment),
            choices=_at_most(policy, env_rule.cap),
        )
    stage_rule = rules.product_stage
    stage = view.ticket.product_stage
    if (
        stage_rule
        and stage_rule.cap
        and stage is not None
        and stage.lower() in stage_rule.stages
        and policy.severity(priority) < policy.severity(stage_rule.cap)
    ):
        return t(
            "reclassify.error.stage",
            priority=escape(priority),
            stage=escape(stage),
            choices=_at_most(policy, stage_rule.cap),
        )
    return None


def _at_most(policy: Policy, cap: str) -> str:
    return ", ".join(p for p in policy.levels if policy.severity(p) >= policy.severity(cap))
