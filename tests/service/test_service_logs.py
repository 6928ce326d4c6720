"""Logs: JSON lines off a terminal, every known secret masked wherever it appears."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from slabot.service.logs import MASK, SecretMasker, configure_logging, get_logger

SECRET = "s3cr3t-signing-value"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    configure_logging(SecretMasker([SECRET, "xoxb-token-value"]), form="auto", stream=stream)
    try:
        yield stream
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_records_are_json_lines_when_not_on_a_terminal(captured: io.StringIO) -> None:
    logging.getLogger("slabot.test").info("poll of %s done", "zendesk")
    (record,) = lines(captured)
    assert record["event"] == "poll of zendesk done"
    assert record["level"] == "info"
    assert record["logger"] == "slabot.test"
    assert "timestamp" in record


def test_a_secret_is_masked_in_messages_arguments_fields_and_tracebacks(
    captured: io.StringIO,
) -> None:
    logging.getLogger("slabot.test").warning("signature %s did not match", SECRET)
    try:
        raise ValueError(f"bad token xoxb-token-value and {SECRET}")
    except ValueError:
        logging.getLogger("slabot.test").exception("request failed")
    get_logger("slabot.test").info("configured", secret=SECRET, nested={"list": [SECRET]})
    text = captured.getvalue()
    assert SECRET not in text and "xoxb-token-value" not in text
    assert text.count(MASK) >= 5


def test_short_values_are_not_masked() -> None:
    masker = SecretMasker(["ab", "abcd"])
    assert masker.mask("ab abcd") == f"ab {MASK}"
