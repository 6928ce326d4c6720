"""Slack's Block Kit limits, checked independently of slabot's own builders.

``block_problems`` and ``view_problems`` list every way a payload breaks a documented
limit (50 blocks a message, 3,000 characters a text, 150 a header, 75 a button, 24 a modal
title...) or is malformed (an empty text, an unknown block type, duplicate block or action
ids). The fake Slack answers ``invalid_blocks`` to a payload with problems, as Slack does.
"""

from __future__ import annotations

from typing import Any

MAX_BLOCKS = 50
LIMITS = {
    "section_text": 3000,
    "field": 2000,
    "fields": 10,
    "header": 150,
    "context_elements": 10,
    "context_text": 3000,
    "actions_elements": 25,
    "button_text": 75,
    "button_value": 2000,
    "url": 3000,
    "action_id": 255,
    "block_id": 255,
    "option_text": 75,
    "option_value": 150,
    "options": 100,
    "placeholder": 150,
    "label": 2000,
    "hint": 2000,
    "modal_title": 24,
    "private_metadata": 3000,
    "fallback_text": 40000,
}
_BLOCK_TYPES = {"section", "header", "context", "divider", "actions", "input"}


def _text(
    obj: Any, where: str, limit: int, kinds: tuple[str, ...] = ("mrkdwn", "plain_text")
) -> list[str]:
    if not isinstance(obj, dict) or obj.get("type") not in kinds:
        return [f"{where}: a text object of type {' or '.join(kinds)} expected, got {obj!r:.80}"]
    text = obj.get("text")
    if not isinstance(text, str) or not text.strip():
        return [f"{where}: empty text"]
    if len(text) > limit:
        return [f"{where}: {len(text)} characters, more than {limit}"]
    return []


def _element(element: Any, where: str, action_ids: set[str]) -> list[str]:
    problems: list[str] = []
    if not isinstance(element, dict):
        return [f"{where}: not an element"]
    kind = element.get("type")
    action_id = element.get("action_id")
    if action_id is not None:
        if len(action_id) > LIMITS["action_id"]:
            problems.append(f"{where}: action_id longer than 255")
        if action_id in action_ids:
            problems.append(f"{where}: duplicate action_id {action_id!r}")
        action_ids.add(action_id)
    if kind == "button":
        problems += _text(
            element.get("text"), f"{where}.text", LIMITS["button_text"], ("plain_text",)
        )
        if len(element.get("value") or "") > LIMITS["button_value"]:
            problems.append(f"{where}: value longer than 2000")
        if len(element.get("url") or "") > LIMITS["url"]:
            problems.append(f"{where}: url longer than 3000")
    elif kind == "static_select":
        options = element.get("options") or []
        if not options or len(options) > LIMITS["options"]:
            problems.append(f"{where}: {len(options)} options (1 to 100)")
        for index, option in enumerate(options):
            problems += _text(
                option.get("text"),
                f"{where}.options[{index}]",
                LIMITS["option_text"],
                ("plain_text",),
            )
            if len(option.get("value") or "") > LIMITS["option_value"]:
                problems.append(f"{where}.options[{index}]: value longer than 150")
        initial = element.get("initial_option")
        if initial is not None and initial not in options:
            problems.append(f"{where}: initial_option is not one of the options")
        if element.get("placeholder") is not None:
            problems += _text(
                element["placeholder"],
                f"{where}.placeholder",
                LIMITS["placeholder"],
                ("plain_text",),
            )
    elif kind == "plain_text_input":
        if element.get("placeholder") is not None:
            problems += _text(
                element["placeholder"],
                f"{where}.placeholder",
                LIMITS["placeholder"],
                ("plain_text",),
            )
        if int(element.get("max_length") or 0) > 3000:
            problems.append(f"{where}: max_length above 3000")
    else:
        problems.append(f"{where}: unknown element type {kind!r}")
    return problems


def block_problems(blocks: Any, max_blocks: int = MAX_BLOCKS) -> list[str]:
    """Every limit ``blocks`` breaks; [] when Slack would accept them."""
    if not isinstance(blocks, list) or not blocks:
        return ["blocks: a non-empty list expected"]
    problems = []
    if len(blocks) > max_blocks:
        problems.append(f"blocks: {len(blocks)} blocks, more than {max_blocks}")
    block_ids: set[str] = set()
    for index, block in enumerate(blocks):
        where = f"blocks[{index}]"
        action_ids: set[str] = set()  # unique within a block, as Slack requires
        kind = block.get("type") if isinstance(block, dict) else None
        if kind not in _BLOCK_TYPES:
            problems.append(f"{where}: unknown block type {kind!r}")
            continue
        block_id = block.get("block_id")
        if block_id is not None:
            if len(block_id) > LIMITS["block_id"]:
                problems.append(f"{where}: block_id longer than 255")
            if block_id in block_ids:
                problems.append(f"{where}: duplicate block_id {block_id!r}")
            block_ids.add(block_id)
        if kind == "section":
            if "text" not in block and "fields" not in block:
                problems.append(f"{where}: a section needs text or fields")
            if "text" in block:
                problems += _text(block["text"], f"{where}.text", LIMITS["section_text"])
            fields = block.get("fields") or []
            if len(fields) > LIMITS["fields"]:
                problems.append(f"{where}: {len(fields)} fields, more than 10")
            for n, field in enumerate(fields):
                problems += _text(field, f"{where}.fields[{n}]", LIMITS["field"])
            if "accessory" in block:
                problems += _element(block["accessory"], f"{where}.accessory", action_ids)
        elif kind == "header":
            problems += _text(block.get("text"), f"{where}.text", LIMITS["header"], ("plain_text",))
        elif kind == "context":
            elements = block.get("elements") or []
            if not elements or len(elements) > LIMITS["context_elements"]:
                problems.append(f"{where}: {len(elements)} context elements (1 to 10)")
            for n, element in enumerate(elements):
                problems += _text(element, f"{where}.elements[{n}]", LIMITS["context_text"])
        elif kind == "actions":
            elements = block.get("elements") or []
            if not elements or len(elements) > LIMITS["actions_elements"]:
                problems.append(f"{where}: {len(elements)} actions (1 to 25)")
            for n, element in enumerate(elements):
                problems += _element(element, f"{where}.elements[{n}]", action_ids)
        elif kind == "input":
            problems += _text(
                block.get("label"), f"{where}.label", LIMITS["label"], ("plain_text",)
            )
            if block.get("hint") is not None:
                problems += _text(block["hint"], f"{where}.hint", LIMITS["hint"], ("plain_text",))
            problems += _element(block.get("element"), f"{where}.element", action_ids)
    return problems


def view_problems(view: Any) -> list[str]:
    """Every limit a modal or Home view breaks (slabot keeps to 50 blocks there too)."""
    if not isinstance(view, dict) or view.get("type") not in ("modal", "home"):
        return ["view: a modal or home view expected"]
    problems = block_problems(view.get("blocks"))
    if view["type"] == "modal":
        problems += _text(view.get("title"), "view.title", LIMITS["modal_title"], ("plain_text",))
        for name in ("submit", "close"):
            if view.get(name) is not None:
                problems += _text(
                    view[name], f"view.{name}", LIMITS["modal_title"], ("plain_text",)
                )
        has_input = any(b.get("type") == "input" for b in view.get("blocks") or [])
        if has_input and view.get("submit") is None:
            problems.append("view: a modal with inputs needs a submit button")
    if len(view.get("private_metadata") or "") > LIMITS["private_metadata"]:
        problems.append("view: private_metadata longer than 3000")
    return problems


def message_problems(args: dict[str, Any]) -> list[str]:
    """Problems of a chat.postMessage / chat.update / response_url payload."""
    problems = []
    text = args.get("text")
    blocks = args.get("blocks")
    if isinstance(blocks, str):
        import json

        blocks = json.loads(blocks)
    if blocks is not None:
        problems += block_problems(blocks)
    if not (isinstance(text, str) and text.strip()) and blocks is None:
        problems.append("message: neither text nor blocks")
    if isinstance(text, str) and len(text) > LIMITS["fallback_text"]:
        problems.append("message: text longer than 40,000 characters")
    return problems
