"""Block Kit building blocks that keep within Slack's limits (texts are cut, lists capped).

Slack refuses a whole message whose blocks break a limit (``invalid_blocks``), so every
helper here cuts its text to the limit of the field it fills, and ``fit`` caps a list of
blocks at ``MAX_BLOCKS``, saying how many were left out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

Block = dict[str, Any]

MAX_BLOCKS = 50
"""Blocks per message (modals and Home allow 100; slabot keeps to 50 everywhere)."""
MAX_TEXT = 3000
"""Characters of a section's or a context element's text."""
MAX_FIELD = 2000
MAX_FIELDS = 10
MAX_HEADER = 150
MAX_BUTTON = 75
MAX_OPTION = 75
MAX_TITLE = 24
"""Characters of a modal's title, submit and close labels."""
MAX_PLACEHOLDER = 150
MAX_CONTEXT_ELEMENTS = 10
MAX_FALLBACK = 3000
"""Characters of a message's top-level ``text`` (the notification and screen-reader text)."""
ELLIPSIS = "…"


def cut(text: str, limit: int) -> str:
    """``text`` shortened to at most ``limit`` characters, ending in an ellipsis if cut."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + ELLIPSIS


def escape(text: str) -> str:
    """Text safe inside mrkdwn: Slack's three control characters escaped."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link(url: str | None, label: str) -> str:
    """``<url|label>`` in mrkdwn, or the bare label when the address is unknown."""
    shown = escape(label).replace("|", "¦")
    return f"<{url}|{shown}>" if url else f"*{shown}*"


def slack_date(instant: datetime, fallback: str) -> str:
    """A time every reader sees in their own time zone and format (``<!date^...>``)."""
    return f"<!date^{int(instant.timestamp())}^{{date_short_pretty}} {{time}}|{escape(fallback)}>"


def mrkdwn(text: str, limit: int = MAX_TEXT) -> Block:
    return {"type": "mrkdwn", "text": cut(text, limit)}


def plain(text: str, limit: int = MAX_TEXT) -> Block:
    return {"type": "plain_text", "text": cut(text, limit), "emoji": True}


def header(text: str) -> Block:
    return {"type": "header", "text": plain(text, MAX_HEADER)}


def section(
    text: str,
    *,
    fields: Iterable[str] = (),
    accessory: Block | None = None,
    block_id: str | None = None,
) -> Block:
    block: Block = {"type": "section", "text": mrkdwn(text)}
    shown = [mrkdwn(field, MAX_FIELD) for field in fields][:MAX_FIELDS]
    if shown:
        block["fields"] = shown
    if accessory is not None:
        block["accessory"] = accessory
    if block_id is not None:
        block["block_id"] = block_id
    return block


def sections(text: str) -> list[Block]:
    """A long text as as many sections as it needs, split between lines where possible."""
    blocks = []
    rest = text
    while rest:
        if len(rest) <= MAX_TEXT:
            blocks.append(section(rest))
            break
        cut_at = rest.rfind("\n", 0, MAX_TEXT)
        if cut_at <= 0:
            cut_at = MAX_TEXT
        blocks.append(section(rest[:cut_at]))
        rest = rest[cut_at:].lstrip("\n")
    return blocks


def context(*texts: str) -> Block:
    return {
        "type": "context",
        "elements": [mrkdwn(text) for text in texts if text][:MAX_CONTEXT_ELEMENTS],
    }


def divider() -> Block:
    return {"type": "divider"}


def button(
    text: str,
    action_id: str,
    *,
    value: str | None = None,
    url: str | None = None,
    style: str | None = None,
) -> Block:
    element: Block = {"type": "button", "text": plain(text, MAX_BUTTON), "action_id": action_id}
    if value is not None:
        element["value"] = value
    if url is not None:
        element["url"] = url
    if style is not None:
        element["style"] = style
    return element


def actions(*elements: Block, block_id: str | None = None) -> Block:
    block: Block = {"type": "actions", "elements": list(elements)}
    if block_id is not None:
        block["block_id"] = block_id
    return block


def option(text: str, value: str) -> Block:
    return {"text": plain(text, MAX_OPTION), "value": value}


def fit(blocks: list[Block], more: Callable[[int], str], limit: int = MAX_BLOCKS) -> list[Block]:
    """At most ``limit`` blocks: when there are more, the last one kept says ``more(n)``, n
    being how many blocks were left out."""
    if len(blocks) <= limit:
        return blocks
    return [*blocks[: limit - 1], context(more(len(blocks) - limit + 1))]
