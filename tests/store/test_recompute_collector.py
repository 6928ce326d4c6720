"""The recompute keeps Python's cyclic garbage collector off while a batch runs (its
collections would walk the long-lived heap again and again: docs/benchmarks.md) and gives
it back as it was: between batches, after the last, and when a batch fails."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from store_support import MONDAY_0900_LA, FakeClock
from test_store_recompute_batch import edited, edited_policy, store_tickets

from bot.compiled import Policy
from slabot.store import recompute as module
from slabot.store.services import TicketService


@pytest.fixture
def collecting() -> Iterator[None]:
    """The collector on for the test, as it was after it."""
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def service_with_tickets(migrated: Engine, tmp_path: Any) -> TicketService:
    clock = FakeClock(MONDAY_0900_LA)
    store_tickets(migrated, 6, clock)
    clock.now += timedelta(hours=3)
    return TicketService(migrated, {"zoom": edited_policy(tmp_path, edited)}, clock)


def test_the_collector_is_off_during_a_batch_and_on_between_them(
    migrated: Engine, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, collecting: None
) -> None:
    service = service_with_tickets(migrated, tmp_path)
    during: list[bool] = []
    real = module.evaluate_many

    def watched(tickets: Any, policy: Policy, now: datetime) -> Any:
        during.append(gc.isenabled())
        return real(tickets, policy, now)

    monkeypatch.setattr(module, "evaluate_many", watched)
    between = [gc.isenabled() for _ in service.recompute("zoom", batch_size=2)]
    assert len(during) > 1 and not any(during)
    assert between and all(between)
    assert gc.isenabled()


def test_a_failed_batch_gives_the_collector_back(
    migrated: Engine, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, collecting: None
) -> None:
    service = service_with_tickets(migrated, tmp_path)

    def failing(tickets: Any, policy: Policy, now: datetime) -> Any:
        raise RuntimeError("the engine failed")

    monkeypatch.setattr(module, "evaluate_many", failing)
    with pytest.raises(RuntimeError, match="the engine failed"):
        list(service.recompute("zoom", batch_size=2))
    assert gc.isenabled()


def test_a_collector_turned_off_by_the_caller_stays_off(
    migrated: Engine, tmp_path: Any, collecting: None
) -> None:
    service = service_with_tickets(migrated, tmp_path)
    gc.disable()
    between = [gc.isenabled() for _ in service.recompute("zoom", batch_size=2)]
    assert between and not any(between)
    assert not gc.isenabled()
