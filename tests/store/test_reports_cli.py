"""``slabot report`` and ``slabot credits``: the documented table, CSV and JSON contracts."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import yaml
from sqlalchemy import Engine
from test_store_reports import AS_OF, POLICY, expected_clocks, generate, in_november, play

from slabot.cli import main

ARGS = ["--period", "2026-11", "--tz", "America/New_York", "--as-of", "2026-12-01T15:00:00Z"]


@pytest.fixture
def played(migrated: Engine, database_url: str, monkeypatch: pytest.MonkeyPatch) -> list:
    if not database_url.startswith("sqlite"):
        pytest.skip("the command line reads the same queries; SQLite is enough here")
    monkeypatch.setenv("DATABASE_URL", database_url)
    tickets = generate(seed=18, count=40)
    play(migrated, tickets)
    return tickets


def test_report_json_has_the_documented_keys_and_the_month_s_counts(
    played: list, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", *ARGS, "--by", "plan", "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert set(document) == {"period", "as_of", "by", "priority", "rows"}
    assert document["period"] == {
        "label": "2026-11",
        "zone": "America/New_York",
        "from": "2026-11-01T04:00:00Z",
        "to": "2026-12-01T05:00:00Z",
    }
    assert document["as_of"] == "2026-12-01T15:00:00Z"
    clocks = [c for t in played for c in expected_clocks(t) if in_november(c)]
    got = {
        row["group"]["plan"]: (row["clocks"], row["met"], row["breached"])
        for row in document["rows"]
    }
    want = {
        plan: (
            sum(1 for c in clocks if c.plan == plan),
            sum(c.met for c in clocks if c.plan == plan),
            sum(c.breached for c in clocks if c.plan == plan),
        )
        for plan in {c.plan for c in clocks}
    }
    assert got == want
    row = document["rows"][0]
    assert list(row) == [
        "group",
        "tickets",
        "clocks",
        "met",
        "breached",
        "running",
        "attainment_percent",
        "median_seconds",
        "p90_seconds",
        "paused_seconds",
        "reclassified_tickets",
        "reclassifications",
    ]
    judged = row["met"] + row["breached"]
    assert row["attainment_percent"] == f"{100 * row['met'] / judged:.2f}"


def test_report_csv_and_table(played: list, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", *ARGS, "--by", "plan,priority", "--format", "csv"]) == 0
    lines = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert lines[0][:4] == ["plan", "priority", "tickets", "clocks"]
    assert {(line[0], line[1]) for line in lines[1:]} >= {("gold", "P1"), ("silver", "P3")}
    assert main(["report", *ARGS]) == 0
    table = capsys.readouterr().out
    assert table.startswith("SLA attainment 2026-11 (America/New_York)")
    assert "attained" in table.splitlines()[1] and "gold" in table


def test_credits_statement_lists_each_organization_with_its_evidence(
    played: list, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "reports.yaml"
    policy.write_text(yaml.safe_dump(POLICY))
    assert main(["credits", *ARGS, "--policy", str(policy), "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    statements = document["statements"]
    assert {s["organization"] for s in statements} <= {"Acme", "Globex", "Initech"}
    assert all(s["plan"] == "gold" and s["currency"] == "EUR" for s in statements)
    evidence = [e for s in statements for line in s["lines"] for e in line["evidence"]]
    assert evidence and set(evidence[0]) == {
        "ticket",
        "target",
        "priority",
        "started_at",
        "due",
        "stopped_at",
        "breached_at",
        "paused_seconds",
    }
    assert all(e["breached_at"] == e["due"] for e in evidence)
    assert main(["credits", *ARGS, "--policy", str(policy), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {row["ticket"] for row in rows if row["ticket"]} == {e["ticket"] for e in evidence}
    assert main(["credits", *ARGS, "--policy", str(policy)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("Service credits 2026-11 (America/New_York)")
    assert "owed =" in text and "of the monthly fee" in text
    assert AS_OF.year == 2026


def test_bad_invocations_exit_1_with_what_to_write(
    played: list, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "--as-of", "2026-12-01T15:00:00Z"]) == 1
    assert "--period 2026-11" in capsys.readouterr().err
    assert main(["report", "--period", "2026-11", "--by", "colour"]) == 1
    assert "group by any of" in capsys.readouterr().err
    assert main(["credits", "--period", "2026-W47"]) == 1
    assert "credits are monthly" in capsys.readouterr().err
