"""docs/operations.md stays true: its metrics table lists exactly what ``/metrics`` serves,
and the alert expressions name only those metrics."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.proof.service_support import Target

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def served(target: Target) -> set[str]:
    response = target.client.get("/metrics")
    assert response.status_code == 200
    return {family.name for family in text_string_to_metric_families(response.text)}


def documented(section: str) -> set[str]:
    text = OPERATIONS.read_text(encoding="utf-8")
    start = text.index(f"## {section}")
    end = text.index("\n## ", start + 1)
    names = set(re.findall(r"\bslabot_[a-z_]+", text[start:end]))
    # Prometheus exposes counters with ``_total``, histograms with their series suffixes.
    return {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in names}


def test_the_metrics_table_lists_every_metric_served_and_no_other(target: Target) -> None:
    assert documented("Metrics") == served(target)


def test_the_alerts_use_only_metrics_that_exist(target: Target) -> None:
    assert documented("Alerts worth setting") <= served(target)
