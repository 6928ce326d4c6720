"""``slabot backfill zendesk`` applies the export page by page (one transaction a page) and,
interrupted, resumes at the first page it did not commit when run again with the same
``--since``; its summary line and exit status stay what they were; its progress bar is
quiet when standard error is not a terminal.

Through the real zenpy client against the fake Zendesk on loopback (``page_size`` 10).
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import CONFIG, START, Clock
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from bot.compiled import Policy
from connectors import resume
from connectors.cli import progress_bar
from connectors.zendesk.cli import backfill
from connectors.zendesk.client import ZendeskClient
from connectors.zendesk.config import ZendeskConfig
from connectors.zendesk.poller import STREAM, ZendeskPoller
from connectors.zendesk.sync import ZendeskSync
from slabot.fakes.zendesk import FakeZendesk
from slabot.store.models import StoredTicket
from slabot.store.services import TicketService

REQUESTER, ORG = 501, 701
SINCE = START - timedelta(days=1)


class Interrupted(Exception):
    """The process ending in the middle of a page (before its commit)."""


def serve_tickets(fake: FakeZendesk, count: int) -> None:
    fake.page_size = 10
    fake.add_user(REQUESTER, "end-user", time_zone="Pacific Time (US & Canada)")
    fake.add_organization(
        ORG, organization_fields={"support_plan": "premier", "country": "us", "time_zone": None}
    )
    for ticket_id in range(1, count + 1):
        fake.add_ticket(
            ticket_id,
            requester_id=REQUESTER,
            organization_id=ORG,
            priority="high",
            custom_fields={27642: "env_production"},
            created_at=START - timedelta(minutes=count - ticket_id),
        )


def from_start_time(fake: FakeZendesk) -> int:
    """Export requests that start from a time (not from a cursor)."""
    return sum(
        1 for call in fake.calls if "incremental" in call.path and "start_time" in call.query
    )


def stored(engine: Engine) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(StoredTicket)) or 0


def interrupt_page(sync: ZendeskSync, page: int) -> None:
    """Make the ``page``-th page's ingest end the process (nothing of it is committed)."""
    real = sync.apply_many
    calls = [0]

    def apply_many(bundles: Sequence[Any]) -> list[Any]:
        calls[0] += 1
        if calls[0] == page:
            raise Interrupted
        return real(bundles)

    sync.apply_many = apply_many  # type: ignore[method-assign]


def poller_for(
    client: ZendeskClient, config: ZendeskConfig, engine: Engine, policies: dict[str, Policy]
) -> tuple[ZendeskPoller, ZendeskSync]:
    tickets = TicketService(engine, policies, Clock(START + timedelta(minutes=5)), origin="zendesk")
    sync = ZendeskSync(client, config, tickets)
    return ZendeskPoller(client, sync), sync


def test_an_interrupted_backfill_resumes_at_the_first_page_it_did_not_commit(
    fake: FakeZendesk,
    client: ZendeskClient,
    config: ZendeskConfig,
    engine: Engine,
    policies: dict[str, Policy],
) -> None:
    serve_tickets(fake, 35)
    poller, sync = poller_for(client, config, engine, policies)
    interrupt_page(sync, 3)
    with pytest.raises(Interrupted):
        poller.backfill(SINCE)
    assert stored(engine) == 20  # two pages committed, the third rolled back
    mark = resume.resumable(engine, "zendesk", STREAM, SINCE)
    assert mark is not None and not mark.complete

    poller, _ = poller_for(client, config, engine, policies)
    assert from_start_time(fake) == 1  # the interrupted run's first request
    report = poller.backfill(SINCE)
    assert report.resumed and report.complete
    assert from_start_time(fake) == 1  # from the stored cursor, not from SINCE
    assert (report.tickets, report.applied, report.failed, report.pages) == (15, 15, 0, 2)
    assert stored(engine) == 35

    # Finished: the same backfill again starts from --since (and changes nothing).
    again = poller.backfill(SINCE)
    assert from_start_time(fake) == 2
    assert not again.resumed and (again.tickets, again.applied) == (35, 35)
    assert stored(engine) == 35


def test_a_backfill_since_another_instant_does_not_resume(
    fake: FakeZendesk,
    client: ZendeskClient,
    config: ZendeskConfig,
    engine: Engine,
    policies: dict[str, Policy],
) -> None:
    serve_tickets(fake, 25)
    poller, sync = poller_for(client, config, engine, policies)
    interrupt_page(sync, 2)
    with pytest.raises(Interrupted):
        poller.backfill(SINCE)
    poller, _ = poller_for(client, config, engine, policies)
    report = poller.backfill(SINCE - timedelta(days=1))
    assert not report.resumed and (report.tickets, report.applied) == (25, 25)


def run_backfill(fake: FakeZendesk, tmp_path: Path, database: str) -> int:
    config_file = tmp_path / "slabot.yaml"
    config_file.write_text(yaml.safe_dump(CONFIG), encoding="utf-8")
    environ = {
        "ZENDESK_URL": fake.url,
        "ZENDESK_EMAIL": "slabot@example.com",
        "ZENDESK_API_TOKEN": "test-token",
        "DATABASE_URL": database,
    }
    args = argparse.Namespace(
        source="zendesk",
        since=f"{SINCE:%Y-%m-%d}",
        config=str(config_file),
        policy=[],
        write=False,
    )
    return backfill(args, environ)


def test_slabot_backfill_resumes_says_so_and_keeps_its_summary_line(
    fake: FakeZendesk,
    engine: Engine,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    serve_tickets(fake, 25)
    database = str(engine.url)
    calls = [0]
    real = ZendeskSync.apply_many

    def interrupted_once(self: ZendeskSync, bundles: Sequence[Any]) -> list[Any]:
        calls[0] += 1
        if calls[0] == 2:
            raise Interrupted
        return real(self, bundles)

    monkeypatch.setattr(ZendeskSync, "apply_many", interrupted_once)
    with pytest.raises(Interrupted):
        run_backfill(fake, tmp_path, database)
    capsys.readouterr()

    assert run_backfill(fake, tmp_path, database) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("zendesk: 15 tickets read in 2 pages since ")
    assert "15 applied, 0 failed, 0 skipped as deleted" in captured.out
    assert "zendesk: resumed the backfill since " in captured.err
    # Not a terminal: no progress bar drawn.
    assert "zendesk backfill" not in captured.err and "tickets/s" not in captured.err
    assert stored(engine) == 25


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_counts_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    with progress_bar("zendesk", "tickets") as update:
        update(1000, 1)
        update(1500, 2)
    drawn = screen.getvalue()
    assert "zendesk backfill" in drawn and "1500 tickets" in drawn and "2 pages" in drawn
