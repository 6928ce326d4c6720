"""The modals: reclassify (priority and a required reason), snooze (a reason), notices."""

from __future__ import annotations

import json
from typing import Any

from slabot.slack import ids
from slabot.slack.blocks import (
    MAX_PLACEHOLDER,
    MAX_TITLE,
    Block,
    escape,
    option,
    plain,
    section,
    sections,
)
from slabot.slack.i18n import Catalog
from slabot.slack.store_access import TicketView
from slabot.slack.texts import priority_text

MAX_REASON = 2000
"""Characters of a reason (it goes into the audit and the helpdesk's internal note)."""
MAX_METADATA = 3000


def _modal(
    t: Catalog,
    callback_id: str,
    title: str,
    blocks: list[Block],
    metadata: dict[str, Any] | None = None,
    submit: str | None = None,
) -> dict[str, Any]:
    view: dict[str, Any] = {
        "type": "modal",
        "callback_id": callback_id,
        "title": plain(title, MAX_TITLE),
        "close": plain(t("modal.close" if submit is None else "modal.cancel"), MAX_TITLE),
        "blocks": blocks,
    }
    if submit is not None:
        view["submit"] = plain(submit, MAX_TITLE)
    if metadata is not None:
        text = json.dumps(metadata, separators=(",", ":"))
        if len(text) > MAX_METADATA:
            raise ValueError("modal metadata longer than Slack keeps (3,000 characters)")
        view["private_metadata"] = text
    return view


def reclassify_modal(t: Catalog, view: TicketView) -> dict[str, Any]:
    """Choose a priority of the ticket's policy and say why."""
    levels = view.policy.spec.priorities
    options = [option(f"{level.name} {level.label}", level.name) for level in levels]
    current = next((o for o in options if o["value"] == view.decision.priority), None)
    select: Block = {
        "type": "static_select",
        "action_id": ids.VALUE_ACTION,
        "placeholder": plain(t("modal.reclassify.choose"), MAX_PLACEHOLDER),
        "options": options[:100],
    }
    if current is not None:
        select["initial_option"] = current
    blocks: list[Block] = [
        section(
            t(
                "modal.reclassify.intro",
                ticket=view.label,
                priority=escape(priority_text(view)),
                policy=escape(view.policy.name),
            )
        ),
        {
            "type": "input",
            "block_id": ids.PRIORITY_BLOCK,
            "label": plain(t("modal.reclassify.priority"), 2000),
            "element": select,
        },
        {
            "type": "input",
            "block_id": ids.REASON_BLOCK,
            "label": plain(t("modal.reason"), 2000),
            "hint": plain(t("modal.reclassify.reason_hint"), 2000),
            "element": {
                "type": "plain_text_input",
                "action_id": ids.VALUE_ACTION,
                "multiline": True,
                "max_length": MAX_REASON,
                "placeholder": plain(t("modal.reclassify.reason_placeholder"), MAX_PLACEHOLDER),
            },
        },
    ]
    return _modal(
        t,
        ids.RECLASSIFY_VIEW,
        t("modal.reclassify.title"),
        blocks,
        {"ref": view.ref},
        submit=t("modal.reclassify.submit"),
    )


def snooze_modal(
    t: Catalog, nudge_id: int, hours: int, ticket: str, target: str, until: str
) -> dict[str, Any]:
    """Hold a nudge's reminders for ``hours`` hours; the reason is kept in the audit."""
    blocks: list[Block] = [
        section(t("modal.snooze.intro", ticket=ticket, target=target, hours=hours, until=until)),
        {
            "type": "input",
            "block_id": ids.REASON_BLOCK,
            "label": plain(t("modal.reason"), 2000),
            "hint": plain(t("modal.snooze.reason_hint"), 2000),
            "element": {
                "type": "plain_text_input",
                "action_id": ids.VALUE_ACTION,
                "max_length": 500,
                "placeholder": plain(t("modal.snooze.reason_placeholder"), MAX_PLACEHOLDER),
            },
        },
    ]
    return _modal(
        t,
        ids.SNOOZE_VIEW,
        t("modal.snooze.title"),
        blocks,
        {"nudge": nudge_id, "hours": hours},
        submit=t("modal.snooze.submit"),
    )


def notice_modal(t: Catalog, title: str, text: str) -> dict[str, Any]:
    """A modal that only says something (a refusal, a confirmation) and can be closed."""
    return _modal(t, ids.NOTICE_VIEW, title, sections(text))


def metadata(view: dict[str, Any]) -> dict[str, Any]:
    """The private metadata of a submitted view ({} when absent or unreadable)."""
    try:
        data = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def submitted(view: dict[str, Any], block_id: str) -> str | None:
    """The value an input block holds in a submitted view (a select's value, a text)."""
    state = ((view.get("state") or {}).get("values") or {}).get(block_id) or {}
    element = state.get(ids.VALUE_ACTION) or {}
    if element.get("type") == "static_select":
        selected = element.get("selected_option") or {}
        value = selected.get("value")
    else:
        value = element.get("value")
    return str(value) if isinstance(value, str) else None
