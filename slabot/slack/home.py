"""App Home: the viewer's own tickets at risk (breached, or near a threshold within a horizon)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, tzinfo
from typing import Any

from slack_sdk import WebClient

from slabot.slack import ids
from slabot.slack.blocks import Block, button, context, fit, header, link, section
from slabot.slack.config import SlackConfig
from slabot.slack.directory import Directory
from slabot.slack.i18n import Catalog, catalog, language_of
from slabot.slack.store_access import SlackStore, TicketView
from slabot.slack.texts import (
    MAX_NAME,
    due,
    helpdesk_text,
    priority_text,
    requester_text,
    subject_text,
    target_name,
)
from slabot.store.breaches import BREACH

Clock = Callable[[], datetime]


def at_risk_permille(config: SlackConfig) -> int:
    """The lowest nudge threshold below the breach (75% by default)."""
    below = [p for target in config.nudges.thresholds for p in config.nudges.permilles(target)]
    below = [p for p in below if p < BREACH]
    return min(below) if below else 750


def home_view(
    t: Catalog,
    tickets: list[tuple[TicketView, list[str]]],
    zone: tzinfo | None,
    now: datetime,
    horizon_hours: float,
    email_known: bool = True,
) -> dict[str, Any]:
    """The Home tab: per ticket its subject, requester and group, and its clocks at risk,
    with a Reclassify button."""
    blocks: list[Block] = [header(t("home.title"))]
    if not email_known:
        blocks.append(section(t("home.no_email")))
    elif not tickets:
        blocks.append(section(t("home.empty", hours=f"{horizon_hours:g}")))
    for view, targets in tickets:
        clocks = "\n".join(
            t(
                "home.clock",
                target=target_name(t, target),
                due=due(t, view.decision.targets[target], zone),
            )
            for target in targets
        )
        blocks.append(
            section(
                t("home.ticket", ticket=link(view.url, view.label), priority=priority_text(view))
                + "\n"
                + "".join(f"{line}\n" for line in [_about(t, view)] if line)
                + clocks,
                accessory=button(t("button.reclassify"), ids.RECLASSIFY, value=view.ref),
            )
        )
    blocks.append(context(t("home.updated", when=t.instant(now, zone))))
    return {"type": "home", "blocks": fit(blocks, lambda n: t("more", count=n))}


def _about(t: Catalog, view: TicketView) -> str:
    """Subject, requester, group: the Home tab lists the viewer's own tickets, so the
    assignee (the viewer) is not repeated."""
    parts = [subject_text(t, view)]
    requester = requester_text(view)
    if requester:
        parts.append(t("context.requester", requester=requester))
    if view.queue:
        parts.append(t("context.group", group=helpdesk_text(view.queue, MAX_NAME)))
    return " · ".join(part for part in parts if part)


def publish_home(
    client: WebClient,
    store: SlackStore,
    directory: Directory,
    config: SlackConfig,
    clock: Clock,
    user_id: str,
) -> dict[str, Any]:
    """Build and publish (``views.publish``) the user's Home tab; returns the view."""
    now = clock()
    user = directory.user(user_id)
    t = catalog(language_of(user.locale if user else None, config.language))
    zone = user.zone if user else None
    horizon = config.home.horizon_hours
    tickets: list[tuple[TicketView, list[str]]] = []
    if user is not None and user.email:
        marks = store.at_risk(at_risk_permille(config), now, now + timedelta(hours=horizon))
        views = store.views({m.ticket_id for m in marks}, now)
        by_ticket: dict[int, list[str]] = {}
        for mark in marks:
            view = views.get(mark.ticket_id)
            if view is None or view.assignee_email != user.email:
                continue
            targets = by_ticket.setdefault(mark.ticket_id, [])
            if mark.target not in targets:
                targets.append(mark.target)
        ordered = sorted(
            by_ticket.items(),
            key=lambda item: (
                views[item[0]].policy.severity(views[item[0]].decision.priority),
                views[item[0]].label,
            ),
        )
        tickets = [(views[i], targets) for i, targets in ordered[: config.home.max_tickets]]
    home = home_view(t, tickets, zone, now, horizon, email_known=bool(user and user.email))
    client.views_publish(user_id=user_id, view=home)
    return home
