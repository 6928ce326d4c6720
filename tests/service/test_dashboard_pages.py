"""The dashboard's list a page at a time, on SQLite and PostgreSQL: the pages together are the
whole list in its order, once each (ties across a page's end included), the filters stay in
the next page's address, a search stops at the scan limit and goes on (on PostgreSQL it reads
only the tickets it finds, from a trigram index), and the list's query reads its index in
order instead of sorting the tickets."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from html import unescape
from pathlib import Path

import pytest
from conftest import Clock
from dashboard_support import CREATED, NOW, load, snapshot
from sqlalchemy import event
from starlette.testclient import TestClient

from slabot.service import board
from slabot.service.app import create_app
from slabot.service.runtime import Runtime, build_runtime
from slabot.service.settings import load_settings
from slabot.store.migrate import upgrade
from slabot.store.snapshot import StatusChange

LOOPBACK = ("127.0.0.1", 50000)
EXTRA = 118
"""Tickets added to the five open ones of ``load``: three pages of 50 and a bit."""


@pytest.fixture(params=["sqlite", "postgresql"])
def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runtime]:
    url = (
        f"sqlite:///{tmp_path / 'board.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    (tmp_path / "empty.yaml").write_text("", encoding="utf-8")
    settings = load_settings({"DATABASE_URL": url}, tmp_path / "empty.yaml")
    built = build_runtime(settings, Clock(NOW))
    upgrade(built.engine)
    load(built)
    for number in range(EXTRA):
        # Created in threes at the same instant: equal due instants, some across a page's
        # end. Every fourth is in the group Escalations and unassigned; every tenth waits on
        # the customer (no running clock: listed after the others, by id).
        created = CREATED + timedelta(minutes=number // 3)
        waiting = number % 10 == 9
        built.tickets.ingest(
            snapshot(
                "zendesk",
                str(1000 + number),
                created_at=created,
                updated_at=created + timedelta(minutes=30),
                assignee=None if number % 4 == 0 else f"agent{number % 3}@example.com",
                queue="Escalations" if number % 4 == 0 else "Tier 1",
                shown={"subject": "needle in the queue" if number in (3, 70, 111) else "hay"},
                **(
                    {
                        "status": "pending",
                        "first_response_at": created + timedelta(minutes=10),
                        "status_history": (
                            StatusChange(created + timedelta(minutes=20), "pending", "p"),
                        ),
                    }
                    if waiting
                    else {}
                ),
            )
        )
    try:
        yield built
    finally:
        built.close()


def refs(html: str) -> list[str]:
    return re.findall(r'data-ref="([^"]+)"', html)


def next_page(html: str) -> str | None:
    found = re.search(r'<a href="([^"]+)" id="next-page"', html)
    return unescape(found.group(1)) if found else None


def whole_list(runtime: Runtime, filters: board.Filters) -> list[str]:
    """The list on one page (a page larger than every ticket stored)."""
    found = board.open_tickets(runtime.engine, runtime.store, NOW, filters, page_size=10_000)
    assert found.next is None
    return [row.ref for row in found.rows]


def pages(http: TestClient, address: str) -> list[list[str]]:
    seen: list[list[str]] = []
    while address:
        page = http.get(address)
        assert page.status_code == 200
        seen.append(refs(page.text))
        address = next_page(page.text) or ""
        assert len(seen) < 10
    return seen


def test_the_pages_together_are_the_whole_list_in_order_each_ticket_once(
    runtime: Runtime,
) -> None:
    with TestClient(create_app(runtime), client=LOOPBACK) as http:
        shown = pages(http, "/")
        first = http.get("/")
    assert [len(page) for page in shown] == [50, 50, EXTRA + 5 - 100]
    everything = [ref for page in shown for ref in page]
    assert everything == whole_list(runtime, board.Filters())
    assert len(set(everything)) == EXTRA + 5
    assert "zendesk:104" not in everything  # solved
    assert "50 open tickets on this page, more on the next page" in first.text
    # The list's order: by next due instant, ties by id; the tickets with no running clock
    # (waiting on the customer) after them, by id.
    rows = board.open_tickets(runtime.engine, runtime.store, NOW, page_size=10_000).rows
    due = [row.next_due for row in rows if row.next_due is not None]
    assert due == sorted(due) and len(due) > 100
    assert all(row.next_due is None for row in rows[len(due) :])
    assert {row.state for row in rows[len(due) :]} == {"paused"}


@pytest.mark.parametrize(
    "filters",
    [
        board.Filters(group="Escalations"),
        board.Filters(unassigned=True),
        board.Filters(state="breached"),
        board.Filters(state="paused"),
        board.Filters(state="running"),
        board.Filters(group="Escalations", state="breached"),
        board.Filters(unassigned=True, state="running"),
    ],
    ids=lambda f: ",".join(f"{k}={v}" for k, v in vars_of(f).items()),
)
def test_small_pages_of_a_filtered_list_are_its_rows_once_each(
    runtime: Runtime, filters: board.Filters
) -> None:
    expected = whole_list(runtime, filters)
    # (Nearly everything is breached or at risk at NOW: few tickets are merely running.)
    assert len(expected) > (1 if filters.state == "running" else 7)
    # What SQL narrows is only a shortcut: the same rows as the unfiltered list filtered.
    every = board.open_tickets(runtime.engine, runtime.store, NOW, page_size=10_000).rows
    assert expected == [row.ref for row in every if filters.keep(row)]
    seen: list[str] = []
    after: str | None = None
    while True:
        page = board.open_tickets(runtime.engine, runtime.store, NOW, filters, after, page_size=7)
        assert len(page.rows) <= 7
        assert all(filters.keep(row) for row in page.rows)
        seen += [row.ref for row in page.rows]
        if page.next is None:
            break
        assert len(page.rows) == 7
        after = page.next
    assert seen == expected


def vars_of(filters: board.Filters) -> dict[str, object]:
    return {
        name: getattr(filters, name)
        for name in ("group", "unassigned", "state")
        if getattr(filters, name)
    }


def test_the_next_page_keeps_the_filters_and_a_bad_position_shows_the_first_page(
    runtime: Runtime,
) -> None:
    with TestClient(create_app(runtime), client=LOOPBACK) as http:
        shown = pages(http, "/?group=Tier+1&source=zendesk")
        first = http.get("/?group=Tier+1&source=zendesk")
        nonsense = http.get("/?after=d9999999999999999999.x")
        start = http.get("/")
    tier_1 = whole_list(runtime, board.Filters(group="Tier 1", source="zendesk"))
    assert len(tier_1) == EXTRA - 30
    assert [len(page) for page in shown] == [50, len(tier_1) - 50]
    assert [ref for page in shown for ref in page] == tier_1
    link = next_page(first.text)
    assert link is not None and "group=Tier+1" in link and "source=zendesk" in link
    assert refs(nonsense.text) == refs(start.text)


def test_a_rare_search_stops_at_the_scan_limit_and_the_next_page_goes_on(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(board, "SCAN_LIMIT", 40)
    # The words matched as the list is read, on PostgreSQL too (where a word of a trigram or
    # more is otherwise found from the index: the test below).
    monkeypatch.setattr(board, "TRIGRAM", 100)
    words = board.Filters(q="needle")
    first = board.open_tickets(runtime.engine, runtime.store, NOW, words)
    assert first.cut_short and first.scanned == 40 and first.next is not None
    found = [row.ref for row in first.rows]
    after = first.next
    while after is not None:
        page = board.open_tickets(runtime.engine, runtime.store, NOW, words, after)
        assert page.scanned <= 40
        found += [row.ref for row in page.rows]
        after = page.next
    assert sorted(found) == ["zendesk:1003", "zendesk:1070", "zendesk:1111"]
    monkeypatch.undo()
    assert found == whole_list(runtime, words)


SEARCHES = ("needle", "NEEDLE queue", "zd-100", "zendesk:111", "escalations agent", "10_", "1%")
"""Searches the SQL and the Python matching must agree on: case, two words, the labels, an
underscore and a percent sign (literal, not ``LIKE``'s wildcards)."""


def test_a_search_on_postgresql_reads_only_the_tickets_it_finds_and_finds_the_same(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(board, "SCAN_LIMIT", 40)
    first = board.open_tickets(runtime.engine, runtime.store, NOW, board.Filters(q="needle"))
    if runtime.engine.dialect.name == "postgresql":  # the three found, nothing else read
        assert [row.ref for row in first.rows] == ["zendesk:1003", "zendesk:1070", "zendesk:1111"]
        assert (first.scanned, first.cut_short, first.next) == (3, False, None)
    else:  # read in the list's order, the scan limit ends the page
        assert (first.scanned, first.cut_short) == (40, True)
    monkeypatch.undo()
    for q in SEARCHES:
        indexed = whole_list(runtime, board.Filters(q=q))
        monkeypatch.setattr(board, "TRIGRAM", 100)  # matched as read, as on SQLite
        assert whole_list(runtime, board.Filters(q=q)) == indexed, q
        monkeypatch.undo()
    assert whole_list(runtime, board.Filters(q="10_")) == []
    assert len(whole_list(runtime, board.Filters(q="zd-100"))) == 10  # 100, 1000-1009


def test_a_search_on_postgresql_is_answered_by_the_trigram_index(runtime: Runtime) -> None:
    """The search's SQL is one the trigram index answers (``Bitmap Index Scan`` on it when
    nothing else may read the table): on a few tickets the planner prefers the list's index,
    at a million it takes this one (bench/dashboard_list.py)."""
    if runtime.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no trigram index: the words are matched as the list is read")
    statements: list[tuple[str, object]] = []

    def capture(_conn: object, _cursor: object, sql: str, parameters: object, *_: object) -> None:
        if "FROM tickets" in sql and "search_text LIKE" in sql:
            statements.append((sql, parameters))

    event.listen(runtime.engine, "before_cursor_execute", capture)
    try:
        board.open_tickets(runtime.engine, runtime.store, NOW, board.Filters(q="needle queue"))
    finally:
        event.remove(runtime.engine, "before_cursor_execute", capture)
    assert statements
    with runtime.engine.connect() as connection, connection.begin() as transaction:
        # On 123 tickets any index is as good: take the list's own away (undone below) and
        # forbid a walk of the table, so the plan shows the search's condition is indexable.
        for index in ("next_due_at_id", "queue_next_due_at_id", "assignee_email_next_due_at_id"):
            connection.exec_driver_sql(f"DROP INDEX ix_tickets_{index}")
        connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
        connection.exec_driver_sql("SET LOCAL enable_indexscan = off")  # the id's walk
        for sql, parameters in statements:
            plan = " | ".join(
                str(row[0]) for row in connection.exec_driver_sql("EXPLAIN " + sql, parameters)
            )
            assert "Bitmap Index Scan on ix_tickets_search_text_trgm" in plan, plan
        transaction.rollback()


@pytest.mark.parametrize(
    "filters",
    [board.Filters(), board.Filters(group="Escalations"), board.Filters(assignee="x@y.z")],
    ids=["default", "group", "assignee"],
)
def test_a_page_is_read_from_an_index_in_order_not_sorted(
    runtime: Runtime, filters: board.Filters
) -> None:
    """SQLite's plan of the list's queries: an index of the list's columns, no sort of the
    rows (``USE TEMP B-TREE FOR ORDER BY``); PostgreSQL picks by statistics (the bench)."""
    if runtime.engine.dialect.name != "sqlite":
        pytest.skip("the plan is checked on SQLite; bench/dashboard_list.py times PostgreSQL")
    statements: list[tuple[str, object]] = []

    def capture(_conn: object, _cursor: object, sql: str, parameters: object, *_: object) -> None:
        if "FROM tickets" in sql and "ORDER BY tickets.next_due_at" in sql:
            statements.append((sql, parameters))

    event.listen(runtime.engine, "before_cursor_execute", capture)
    try:
        board.open_tickets(runtime.engine, runtime.store, NOW, filters, page_size=3)
    finally:
        event.remove(runtime.engine, "before_cursor_execute", capture)
    assert statements
    with runtime.engine.connect() as connection:
        for sql, parameters in statements:
            plan = " | ".join(
                str(row[-1])
                for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, parameters)
            )
            assert "INDEX ix_tickets_" in plan, plan
            assert "TEMP B-TREE" not in plan, plan
