"""docs/metrics.md's worked examples are what ``slabot evaluate`` prints (read from the
document, so the two cannot drift apart), and its example policy is valid."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from slabot.cli import main

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
EXAMPLES = list(
    re.finditer(
        r"\$ echo '(?P<ticket>\{.*?\})' \\\n\s*\| slabot evaluate --policy (?P<policy>\S+) "
        r"--now (?P<now>\S+)\n(?P<output>\{.*\})\n",
        DOC,
    )
)


def test_every_built_in_metric_has_a_worked_example() -> None:
    sections = re.findall(r"^### (\w+)$", DOC, flags=re.MULTILINE)
    assert sections[:6] == [
        "first_response",
        "restoration",
        "next_update",
        "next_reply",
        "agent_work",
        "requester_wait",
    ]
    assert len(EXAMPLES) == 6


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda m: m["ticket"][:12])
def test_a_worked_example_prints_what_the_document_shows(
    example: re.Match[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(example["ticket"] + "\n"))
    status = main(["evaluate", "--policy", str(ROOT / example["policy"]), "--now", example["now"]])
    out, err = capsys.readouterr()
    assert (status, err) == (0, "")
    assert out == example["output"] + "\n"
