"""``slabot outbox list [--dead] [--target T]`` and ``slabot outbox replay ID...``: what an
operator sees of the writes slabot owes, and putting a dead letter back in line."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from slabot.cli import main
from slabot.policy_files import bundled_policy_paths, load_policy
from slabot.store.db import make_engine
from slabot.store.migrate import upgrade
from slabot.store.outbox import Outbox
from slabot.store.services import TicketService
from slabot.store.snapshot import Snapshot

NOW = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'slabot.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    engine = make_engine(url)
    upgrade(engine)
    try:
        yield engine
    finally:
        engine.dispose()


def owe_writes(engine: Engine) -> None:
    """A Zendesk P1 asked for from staging: priority and tag writes owed."""
    policies = {p.name: p for p in (load_policy(path) for path in bundled_policy_paths())}
    service = TicketService(engine, policies, lambda: NOW, origin="zendesk")
    service.ingest(
        Snapshot(
            source="zendesk",
            external_key="1001",
            policy="zoom",
            created_at=NOW,
            updated_at=NOW,
            priority="P1",
            plan="premier",
            environment="staging",
            shown={"priority": "P1", "tags": []},
        )
    )


def test_list_shows_what_is_owed_and_dead_lists_only_dead_letters(
    database: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    owe_writes(database)
    assert main(["outbox", "list"]) == 0
    out = capsys.readouterr().out
    assert "zendesk  ticket 1  set_priority  attempts 0  due 2026-11-16 09:00:00Z" in out
    assert out.rstrip().endswith("items owed")
    assert main(["outbox", "list", "--dead"]) == 0
    assert capsys.readouterr().out == "0 dead letters\n"
    assert main(["outbox", "list", "--target", "slack"]) == 0
    assert capsys.readouterr().out == "0 items owed\n"


def test_a_dead_letter_is_listed_with_its_error_and_replayed(
    database: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    owe_writes(database)
    outbox = Outbox(database, lambda: NOW)
    claimed = outbox.claim("zendesk", "worker", limit=1)
    (item,) = claimed
    outbox.fail(item, item.attempt, "Zendesk refused the update: Priority: low is not valid", False)
    assert main(["outbox", "list", "--dead"]) == 0
    out = capsys.readouterr().out
    assert f"{item.id}  zendesk  ticket 1  {item.kind}  attempts 1  dead: Zendesk refused" in out
    assert out.endswith("1 dead letters\n")

    assert main(["outbox", "replay", str(item.id)]) == 0
    assert f"{item.id}: replayed" in capsys.readouterr().out
    assert main(["outbox", "list", "--dead"]) == 0
    assert capsys.readouterr().out == "0 dead letters\n"
    later = datetime.now(UTC) + timedelta(seconds=1)  # replay makes it due at the real now
    claimed_again = Outbox(database, lambda: later).claim("zendesk", "w", 50)
    (again,) = [claimed for claimed in claimed_again if claimed.id == item.id]
    assert again.attempt == 2


def test_replaying_what_is_not_a_dead_letter_says_so_and_exits_1(
    database: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    owe_writes(database)
    assert main(["outbox", "replay", "1", "999"]) == 1
    err = capsys.readouterr().err
    assert "outbox item 1 is not a dead letter" in err and "item 999" in err


def test_without_a_database_it_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'missing.db'}")
    assert main(["outbox", "list", "--dead"]) == 1
    assert "run `slabot db upgrade`" in capsys.readouterr().err
    assert not (tmp_path / "missing.db").exists()
