"""Routing in the store, on SQLite and PostgreSQL: the policy and rule stored with the
decision, a ticket moving to another policy mid-life (clock starts and pauses kept, the move
audited as ``policy_changed``, a breach reported at most once per clock cycle), and
``recompute`` by routing (``slabot recompute --routing``, dry run and applied)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from store_support import MONDAY_0900_LA, FakeClock, count, rows, snapshot

from bot.engine import evaluate
from bot.routing import Router, RoutingSpec
from bot.ticket import Ticket
from slabot.cli import main
from slabot.policy_files import BUNDLED_POLICIES, load_policy
from slabot.store.models import Nudge, OutboxItem, StoredDecision, StoredTicket, TicketEvent
from slabot.store.services import TicketService

T0 = MONDAY_0900_LA
HOUR = timedelta(hours=1)
RULES = {
    "rules": [
        {"name": "cloudtalk-on-jira", "policy": "cloudtalk", "when": {"source": "jira"}},
        {"name": "zmanda-brand", "policy": "zmanda", "when": {"brand": "2"}},
        {"name": "zoom", "policy": "zoom", "default": True},
    ]
}
CONFIG = """\
routing:
  rules:
    - {name: cloudtalk-on-jira, policy: cloudtalk, when: {source: jira}}
    - {name: zmanda-brand, policy: zmanda, when: {brand: "2"}}
    - {name: zoom, policy: zoom, default: true}
"""


def routed_service(engine: Engine, clock: FakeClock) -> TicketService:
    policies = {
        n: load_policy(BUNDLED_POLICIES / f"{n}.yaml") for n in ("zoom", "zmanda", "cloudtalk")
    }
    router = Router(RoutingSpec.model_validate(RULES), policies)
    return TicketService(engine, policies, clock, router=router)


def ticket_row(engine: Engine) -> StoredTicket:
    [row] = rows(engine, StoredTicket)
    return row


def decision_row(engine: Engine) -> StoredDecision:
    [row] = rows(engine, StoredDecision)
    return row


def moves(engine: Engine) -> list[TicketEvent]:
    with Session(engine) as session:
        query = select(TicketEvent).where(TicketEvent.kind == "policy_changed")
        return list(session.scalars(query.order_by(TicketEvent.id)))


def test_the_routed_policy_and_its_rule_are_stored_with_the_decision(migrated: Engine) -> None:
    service = routed_service(migrated, FakeClock(T0))
    # The snapshot's own policy (the helpdesk's) gives way to the rules.
    result = service.ingest(snapshot(policy="", plan="standard", routing={"brand": "2"}))
    assert result.outcome == "created"
    row, decision = ticket_row(migrated), decision_row(migrated)
    assert (row.policy, row.routing) == ("zmanda", {"brand": "2"})
    assert (decision.policy, decision.routing_rule) == ("zmanda", "zmanda-brand")
    assert moves(migrated) == []  # a new ticket is not a move


def test_a_ticket_moved_to_another_policy_keeps_its_clock_starts_and_pauses(
    migrated: Engine,
) -> None:
    clock = FakeClock(T0)
    service = routed_service(migrated, clock)
    zoom_brand = {"brand": "1", "tags": ["web"]}
    service.ingest(snapshot(plan="standard", routing=zoom_brand))
    assert decision_row(migrated).policy == "zoom"
    # Waiting on the customer for an hour, then back, then moved to the Zmanda brand.
    clock.now = T0 + HOUR
    service.ingest(
        snapshot(plan="standard", routing=zoom_brand, status="pending", updated_at=clock.now)
    )
    clock.now = T0 + 2 * HOUR
    service.ingest(
        snapshot(plan="standard", routing=zoom_brand, status="open", updated_at=clock.now)
    )
    clock.now = T0 + 3 * HOUR
    result = service.ingest(
        snapshot(plan="standard", routing={"brand": "2"}, status="open", updated_at=clock.now)
    )
    assert result.outcome == "updated"
    assert "policy_changed" in result.events

    row = ticket_row(migrated)
    assert row.policy == "zmanda"
    assert row.created_at == T0  # the clock's start is the ticket's, not the move's
    assert row.paused == [[(T0 + HOUR).isoformat(), (T0 + 2 * HOUR).isoformat()]]
    zmanda = load_policy(BUNDLED_POLICIES / "zmanda.yaml")
    expected = evaluate(
        Ticket(
            id="1001",
            created_at=T0,
            priority="P2",
            plan="standard",
            environment="production",
            channel="phone",
            paused=((T0 + HOUR, T0 + 2 * HOUR),),
        ),
        zmanda,
        clock.now,
    )
    assert result.decision == expected
    stored = decision_row(migrated)
    assert (stored.policy, stored.routing_rule) == ("zmanda", "zmanda-brand")
    assert stored.first_response_due == expected.targets["first_response"].due
    # Under zoom the same ticket had another due date: the move changed it.
    assert expected.targets["first_response"].due != evaluate(
        Ticket(id="1001", created_at=T0, priority="P2", plan="standard",
               environment="production", channel="phone",
               paused=((T0 + HOUR, T0 + 2 * HOUR),)),
        load_policy(BUNDLED_POLICIES / "zoom.yaml"),
        clock.now,
    ).targets["first_response"].due  # fmt: skip

    [move] = moves(migrated)
    assert move.payload == {"from": "zoom", "to": "zmanda", "rule": "zmanda-brand"}
    assert (move.actor, move.origin, move.occurred_at) == ("slabot", "policy", clock.now)
    assert (
        move.reason
        == "routing rule 'zmanda-brand' matches: evaluated under policy zmanda (was zoom)"
    )
    # The same snapshot again moves nothing and records nothing.
    again = service.ingest(
        snapshot(plan="standard", routing={"brand": "2"}, status="open", updated_at=clock.now)
    )
    assert again.outcome == "unchanged"
    assert len(moves(migrated)) == 1


def test_a_breach_is_reported_once_per_clock_cycle_across_a_move(migrated: Engine) -> None:
    clock = FakeClock(T0)
    service = routed_service(migrated, clock)
    service.ingest(snapshot(plan="standard", routing={"brand": "1"}))
    clock.now = T0 + timedelta(days=3)  # past first response under either policy
    first = service.record_breaches()
    assert [b.target for b in first] == ["first_response"]
    service.ingest(snapshot(plan="standard", routing={"brand": "2"}, updated_at=clock.now))
    assert decision_row(migrated).first_response_state == "breached"
    assert decision_row(migrated).policy == "zmanda"
    assert service.record_breaches() == []
    assert count(migrated, Nudge) == 1
    with Session(migrated) as session:
        notices = session.scalars(
            select(OutboxItem).where(OutboxItem.kind == "breach_notice")
        ).all()
    assert len(notices) == 1
    # Moved back: still the same cycle, still one breach.
    service.ingest(snapshot(plan="standard", routing={"brand": "1"}, updated_at=clock.now + HOUR))
    assert service.record_breaches(clock.now + HOUR) == []
    assert [m.payload["to"] for m in moves(migrated)] == ["zmanda", "zoom"]


def test_recompute_by_routing_lists_the_moves_then_applies_them(
    migrated: Engine,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Stored without routing (every ticket under zoom), with the attributes rules will read.
    policies = {
        n: load_policy(BUNDLED_POLICIES / f"{n}.yaml") for n in ("zoom", "zmanda", "cloudtalk")
    }
    plain = TicketService(migrated, policies, FakeClock(T0))
    plain.ingest(snapshot(external_key="1", plan="standard", routing={"brand": "1"}))
    plain.ingest(snapshot(external_key="2", plan="standard", routing={"brand": "2"}))
    assert {r.policy for r in rows(migrated, StoredTicket)} == {"zoom"}
    config = tmp_path / "slabot.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    monkeypatch.setenv("DATABASE_URL", database_url)
    now = (T0 + HOUR).isoformat()

    assert main(["recompute", "--routing", str(config), "--dry-run", "--now", now]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "zendesk:2  policy zoom -> zmanda (rule 'zmanda-brand')"
    assert out[1].startswith("zendesk:2  first_response due ")
    assert out[-1] == (
        f"routing {config}: 2 open tickets, 1 would change, 1 unchanged, 0 failed; "
        "dry run: nothing stored"
    )
    assert {r.policy for r in rows(migrated, StoredTicket)} == {"zoom"}
    assert moves(migrated) == []

    assert main(["recompute", "--routing", str(config), "--now", now]) == 0
    assert (
        capsys.readouterr()
        .out.splitlines()[-1]
        .endswith("1 changed, 1 unchanged, 0 failed; applied")
    )
    by_key = {r.external_key: r.policy for r in rows(migrated, StoredTicket)}
    assert by_key == {"1": "zoom", "2": "zmanda"}
    [move] = moves(migrated)
    assert move.payload == {"from": "zoom", "to": "zmanda", "rule": "zmanda-brand"}
    decisions = {d.ticket_id: (d.policy, d.routing_rule) for d in rows(migrated, StoredDecision)}
    assert sorted(decisions.values()) == [("zmanda", "zmanda-brand"), ("zoom", "zoom")]
    # Run again: nothing left to move.
    assert main(["recompute", "--routing", str(config), "--now", now]) == 0
    assert "0 changed, 2 unchanged" in capsys.readouterr().out


def test_a_tag_of_the_policy_left_is_taken_off_the_ticket(migrated: Engine) -> None:
    clock = FakeClock(T0)
    service = routed_service(migrated, clock)
    # Zoom: a P1 must be reported by phone; by e-mail it gets zoom's tag.
    first = service.ingest(snapshot(priority="P1", channel="email", routing={"brand": "1"}))
    assert first.decision is not None and "sla_p1_not_by_phone" in first.decision.tags
    shown = {"priority": "P1", "tags": list(first.decision.tags)}
    clock.now = T0 + HOUR
    moved = service.ingest(
        snapshot(
            priority="P1",
            channel="email",
            plan="standard",
            routing={"brand": "2"},
            updated_at=clock.now,
            shown=shown,
        )
    )
    assert moved.decision is not None and "sla_p1_not_by_phone" not in moved.decision.tags
    with Session(migrated) as session:
        writes = session.scalars(
            select(OutboxItem).where(OutboxItem.kind == "set_tags").order_by(OutboxItem.id)
        ).all()
    assert "sla_p1_not_by_phone" in writes[-1].payload["remove"]
