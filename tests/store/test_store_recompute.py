"""``slabot recompute`` on SQLite and PostgreSQL: a reviewable diff, then applied unless
--dry-run; refuses a database that is not migrated."""

from __future__ import annotations

import io
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine, delete
from sqlalchemy.orm import Session
from store_support import MONDAY_0900_LA, FakeClock, count, rows, snapshot

from slabot.cli import main
from slabot.policy_files import BUNDLED_POLICIES, load_policy
from slabot.store.migrate import head_revision, upgrade
from slabot.store.models import (
    OutboxItem,
    StoredDecision,
    StoredTicket,
    TargetMark,
    TicketEvent,
)
from slabot.store.services import TicketService

NOW = "2026-11-16T18:00:00Z"  # Monday 10:00 in Los Angeles
ORIGINAL = yaml.safe_load((BUNDLED_POLICIES / "zoom.yaml").read_text(encoding="utf-8"))


def policy_file(tmp_path: Path, change: Any) -> str:
    """The bundled zoom policy with ``change`` applied to its mapping, written to a file."""
    data = yaml.safe_load((BUNDLED_POLICIES / "zoom.yaml").read_text(encoding="utf-8"))
    change(data)
    path = tmp_path / "zoom-changed.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return str(path)


def slower_first_response_and_a_milder_cap(data: dict[str, Any]) -> None:
    data["plans"]["premier"]["targets"]["P2"]["first_response"] = "6h"
    data["classification"]["environment"]["cap"] = "P3"


@pytest.fixture
def stored(migrated: Engine, database_url: str, monkeypatch: pytest.MonkeyPatch) -> TicketService:
    """Zoom tickets ingested with the bundled policy, plus a solved one and a cloudtalk one."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    zoom = load_policy(BUNDLED_POLICIES / "zoom.yaml")
    cloudtalk = load_policy(BUNDLED_POLICIES / "cloudtalk.yaml")
    clock = FakeClock(MONDAY_0900_LA + timedelta(minutes=5))
    service = TicketService(migrated, {"zoom": zoom, "cloudtalk": cloudtalk}, clock)
    service.ingest(snapshot(external_key="1", shown={"priority": "P2"}))
    service.ingest(snapshot(external_key="2", environment="staging", shown={"priority": "P4"}))
    solved = MONDAY_0900_LA + timedelta(minutes=30)
    service.ingest(snapshot(external_key="3", status="solved", solved_at=solved, updated_at=solved))
    service.ingest(
        snapshot(external_key="4", policy="cloudtalk", plan="professional", priority="P2")
    )
    service.ingest(snapshot(external_key="5", plan="premier_elite", shown={"priority": "P2"}))
    return service


def decisions(engine: Engine) -> list[tuple[Any, ...]]:
    return [
        (d.ticket_id, d.priority, d.first_response_due, d.next_update_due, d.tags)
        for d in rows(engine, StoredDecision)
    ]


EXPECTED_DIFF = [
    "zendesk:1  first_response due 2026-11-16T21:00:00Z -> 2026-11-16T23:00:00Z",
    "zendesk:2  priority P4 -> P3",
    "zendesk:2  next_update due 2026-11-23T17:00:00Z -> 2026-11-20T05:00:00Z",
    "zendesk:5  first_response due 2026-11-16T21:00:00Z -> 2026-11-16T23:00:00Z",
]


def test_a_dry_run_prints_the_changes_and_stores_nothing(
    stored: TicketService,
    migrated: Engine,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = policy_file(tmp_path, slower_first_response_and_a_milder_cap)
    before = (decisions(migrated), rows(migrated, TargetMark), count(migrated, OutboxItem))
    events = count(migrated, TicketEvent)

    assert main(["recompute", "--policy", path, "--dry-run", "--now", NOW]) == 0
    out = capsys.readouterr()
    assert out.err == ""
    assert out.out.splitlines() == [
        *EXPECTED_DIFF,
        "policy zoom: 3 open tickets, 3 would change, 0 unchanged, 0 failed; "
        "dry run: nothing stored",
    ]
    after = (decisions(migrated), rows(migrated, TargetMark), count(migrated, OutboxItem))
    assert [(d[0], d[1], d[2]) for d in after[0]] == [(d[0], d[1], d[2]) for d in before[0]]
    assert len(after[1]) == len(before[1]) and after[2] == before[2]
    assert count(migrated, TicketEvent) == events


def test_applying_stores_decisions_marks_history_and_owed_writes(
    stored: TicketService,
    migrated: Engine,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = policy_file(tmp_path, slower_first_response_and_a_milder_cap)
    assert main(["recompute", "--policy", path, "--now", NOW]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        *EXPECTED_DIFF,
        "policy zoom: 3 open tickets, 3 changed, 0 unchanged, 0 failed; applied",
    ]
    by_ticket = {d[0]: d for d in decisions(migrated)}
    assert by_ticket[1][2] == datetime(2026, 11, 16, 23, 0, tzinfo=UTC)
    assert by_ticket[2][1] == "P3"
    marks = {
        (m.ticket_id, m.target, m.threshold_permille): m.at for m in rows(migrated, TargetMark)
    }
    assert marks[(1, "first_response", 1000)] == datetime(2026, 11, 16, 23, 0, tzinfo=UTC)
    assert marks[(1, "first_response", 750)] == datetime(2026, 11, 16, 21, 30, tzinfo=UTC)
    assert not any(ticket == 3 for ticket, _, _ in marks)  # solved: untouched, unmarked

    (change,) = [e for e in rows(migrated, TicketEvent) if e.kind == "priority_changed"]
    assert (change.ticket_id, change.origin, change.actor, change.reason) == (
        2,
        "policy",
        "slabot",
        "policy zoom recomputed",
    )
    assert change.payload == {"field": "final", "from": "P4", "to": "P3"}
    owed = [(i.ticket_id, i.kind, i.payload) for i in rows(migrated, OutboxItem) if not i.done_at]
    assert (2, "set_priority", {"priority": "P3"}) in owed

    # Applied: a second run finds nothing to change.
    assert main(["recompute", "--policy", path, "--now", NOW]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "policy zoom: 3 open tickets, 0 changed, 3 unchanged, 0 failed; applied"
    ]


def test_a_ticket_whose_plan_the_new_policy_drops_is_kept_tagged_and_noted(
    stored: TicketService,
    migrated: Engine,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Before, such a ticket failed the recompute and kept its old targets. Now it is
    # re-evaluated as a ticket with an unknown plan: no targets (zoom has no default plan),
    # the tag and one internal note owed to Zendesk.
    def drop_premier_elite(data: dict[str, Any]) -> None:
        del data["plans"]["premier_elite"]
        data["plans"]["premier"]["targets"]["P2"]["first_response"] = "6h"

    path = policy_file(tmp_path, drop_premier_elite)
    assert main(["recompute", "--policy", path, "--now", NOW]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        EXPECTED_DIFF[0],
        "zendesk:5  first_response due 2026-11-16T21:00:00Z -> none, state running -> none",
        "zendesk:5  restoration due 2026-11-17T01:00:00Z -> none, state running -> none",
        "zendesk:5  next_update due 2026-11-17T17:00:00Z -> none, state running -> none",
        "zendesk:5  tags +sla_unknown_plan",
        "policy zoom: 3 open tickets, 2 changed, 1 unchanged, 0 failed; applied",
    ]
    after = {d[0]: d for d in decisions(migrated)}
    assert after[5][2:] == (None, None, ["sla_unknown_plan"])
    owed = [(i.ticket_id, i.kind, i.payload) for i in rows(migrated, OutboxItem) if not i.done_at]
    notes = [payload for ticket, kind, payload in owed if kind == "add_note"]
    assert [
        (n["unknown"], "'premier_elite' is not in policy 'zoom'" in n["body"]) for n in notes
    ] == [({"plan": "premier_elite"}, True)]
    assert (5, "set_tags", {"add": ["sla_unknown_plan"], "remove": []}) in owed


def test_an_unchanged_policy_changes_nothing_even_after_clocks_ran_out(
    stored: TicketService, capsys: pytest.CaptureFixture[str]
) -> None:
    # A day later every first response is past due: that is time passing, not a change.
    later = "2026-11-17T18:00:00Z"
    path = str(BUNDLED_POLICIES / "zoom.yaml")
    assert main(["recompute", "--policy", path, "--dry-run", "--now", later]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "policy zoom: 3 open tickets, 0 would change, 3 unchanged, 0 failed; "
        "dry run: nothing stored"
    ]


def test_a_database_not_migrated_is_refused_with_what_to_do(
    engine: Engine,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    path = str(BUNDLED_POLICIES / "zoom.yaml")
    assert main(["recompute", "--policy", path]) == 1
    err = capsys.readouterr().err
    assert err.startswith("slabot: database ")
    if engine.dialect.name == "sqlite":
        assert err.endswith("slabot.db does not exist: run `slabot db upgrade` first\n")
        assert engine.url.database is not None and not Path(engine.url.database).exists()
    else:
        assert f"has no slabot tables; this slabot needs revision {head_revision()}: run" in err

    upgrade(engine, "0001")
    assert main(["recompute", "--policy", path, "--dry-run"]) == 1
    needs = f"is at revision 0001; this slabot needs revision {head_revision()}"
    assert needs in capsys.readouterr().err


def test_applying_fills_the_marks_of_tickets_stored_before_they_existed(
    stored: TicketService, migrated: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    marked = sorted(
        (m.ticket_id, m.target, m.threshold_permille, m.at) for m in rows(migrated, TargetMark)
    )
    with Session(migrated) as session, session.begin():
        session.execute(delete(TargetMark))  # as after upgrading from revision 0001
    assert stored.breached(now=datetime(2026, 11, 30, tzinfo=UTC)) == []
    path = str(BUNDLED_POLICIES / "zoom.yaml")
    assert main(["recompute", "--policy", path, "--now", NOW]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "policy zoom: 3 open tickets, 0 changed, 3 unchanged, 0 failed; applied"
    ]
    refilled = sorted(
        (m.ticket_id, m.target, m.threshold_permille, m.at) for m in rows(migrated, TargetMark)
    )
    assert refilled == [mark for mark in marked if mark[0] != 4]  # 4 is cloudtalk's


# --- writes already owed, or sent and not echoed yet ------------------------------------------


def _priority_writes(engine: Engine, key: str = "2") -> list[OutboxItem]:
    (ticket_id,) = [t.id for t in rows(engine, StoredTicket) if t.external_key == key]
    return [
        item
        for item in rows(engine, OutboxItem)
        if item.kind == "set_priority" and item.ticket_id == ticket_id
    ]


def test_recompute_does_not_owe_a_write_already_owed_or_sent_but_not_echoed(
    stored: TicketService, migrated: Engine, tmp_path: Path
) -> None:
    from slabot.store.outbox import Outbox

    changed = load_policy(policy_file(tmp_path, slower_first_response_and_a_milder_cap))
    clock = FakeClock(datetime.fromisoformat(NOW))
    service = TicketService(migrated, {"zoom": changed}, clock)
    list(service.recompute("zoom"))
    (owed,) = _priority_writes(migrated)  # zendesk:2, capped at P3 now: Zendesk shows P4
    assert (owed.payload, owed.done_at) == ({"priority": "P3"}, None)

    # Still owed: recomputing again owes nothing more.
    clock.now += timedelta(minutes=1)
    list(service.recompute("zoom"))
    assert len(_priority_writes(migrated)) == 1

    # Sent, and Zendesk's echo has not come back: the stored snapshot still says P4, but
    # Zendesk has P3. Recomputing again owes nothing more.
    clock.now += timedelta(minutes=1)
    report = Outbox(migrated, clock).flush("zendesk", lambda item: None, "w1")
    assert report.sent >= 1
    clock.now += timedelta(minutes=1)
    list(service.recompute("zoom"))
    (sent,) = _priority_writes(migrated)
    assert sent.done_at is not None and sent.last_error is None

    # The echo comes back; then an agent sets P4 in Zendesk again: P3 is owed again.
    clock.now += timedelta(minutes=1)
    staging = {"external_key": "2", "environment": "staging"}
    echo = service.ingest(snapshot(updated_at=clock.now, shown={"priority": "P3"}, **staging))
    assert "set_priority" not in echo.enqueued
    clock.now += timedelta(minutes=1)
    agent = service.ingest(snapshot(updated_at=clock.now, shown={"priority": "P4"}, **staging))
    assert "set_priority" in agent.enqueued
    assert [item.payload for item in _priority_writes(migrated)] == [{"priority": "P3"}] * 2


def test_a_sent_write_whose_echo_never_came_is_owed_again_after_the_echo_window(
    stored: TicketService, migrated: Engine, tmp_path: Path
) -> None:
    from slabot.store.outbox import Outbox

    changed = load_policy(policy_file(tmp_path, slower_first_response_and_a_milder_cap))
    clock = FakeClock(datetime.fromisoformat(NOW))
    service = TicketService(migrated, {"zoom": changed}, clock, echo_window=timedelta(hours=1))
    list(service.recompute("zoom"))
    Outbox(migrated, clock).flush("zendesk", lambda item: None, "w1")
    clock.now += timedelta(minutes=59)
    list(service.recompute("zoom"))
    assert len(_priority_writes(migrated)) == 1
    clock.now += timedelta(minutes=2)
    list(service.recompute("zoom"))
    assert [item.done_at is None for item in _priority_writes(migrated)] == [False, True]


# --- the progress bar ---------------------------------------------------------------------------


class _Terminal(io.StringIO):
    """Standard error as a terminal would be: what makes the progress bar show."""

    def isatty(self) -> bool:
        return True


def test_a_terminal_shows_a_progress_bar_and_the_lines_stay_the_same(
    stored: TicketService,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = policy_file(tmp_path, slower_first_response_and_a_milder_cap)
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["recompute", "--policy", path, "--dry-run", "--now", NOW]) == 0
    assert capsys.readouterr().out.splitlines() == [
        *EXPECTED_DIFF,
        "policy zoom: 3 open tickets, 3 would change, 0 unchanged, 0 failed; "
        "dry run: nothing stored",
    ]
    bar = terminal.getvalue()
    assert "recompute zoom" in bar and "3/3" in bar and "tickets" in bar
