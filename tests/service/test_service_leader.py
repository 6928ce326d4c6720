"""Leader election on PostgreSQL: one leader at a time; a follower takes over at its next
check when the leader's session ends (released, or killed); SQLite always leads."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine

from slabot.service.leader import Leadership
from slabot.store.db import make_engine


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[Engine]:
    engine = make_engine(pg_url)
    try:
        yield engine
    finally:
        engine.dispose()


def test_exactly_one_replica_leads_and_a_follower_takes_over_when_it_leaves(
    pg_engine: Engine,
) -> None:
    first, second = Leadership(pg_engine, 4242), Leadership(pg_engine, 4242)
    try:
        assert first.check() is True
        assert second.check() is False
        assert first.check() is True  # the leader keeps its lock
        assert second.check() is False
        first.release()
        assert first.is_leader is False
        assert second.check() is True
        assert first.check() is False
    finally:
        first.release()
        second.release()


def test_a_leader_whose_session_dies_is_replaced_at_the_followers_next_check(
    pg_engine: Engine, pg_url: str
) -> None:
    changes: list[bool] = []
    leader = Leadership(pg_engine, 4243, on_change=changes.append)
    follower = Leadership(pg_engine, 4243)
    try:
        assert leader.check() and not follower.check()
        # The leader's process dies: PostgreSQL ends its session (and its lock).
        with psycopg.connect(pg_url, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT pid FROM pg_stat_activity "
                "WHERE application_name = 'slabot-leader' AND datname = current_database() "
                "AND pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND "
                "objid = 4243 AND granted)"
            ).fetchall()
            assert killed
            for (pid,) in killed:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            # pg_terminate_backend only signals the backend: wait until it has exited (and
            # so released its lock), as a real follower's next check would come later.
            deadline = time.monotonic() + 10
            while admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)",
                ([pid for (pid,) in killed],),
            ).fetchone()[0]:  # type: ignore[index]
                assert time.monotonic() < deadline, "the leader's backend did not exit"
                time.sleep(0.02)
        assert follower.check() is True
        assert leader.check() is False  # it notices its session is gone
        assert changes == [True, False]
    finally:
        leader.release()
        follower.release()


def test_on_sqlite_the_single_process_always_leads(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        leadership = Leadership(engine)
        assert leadership.single_process and leadership.is_leader and leadership.check()
        leadership.release()
        assert leadership.check()
    finally:
        engine.dispose()
