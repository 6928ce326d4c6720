"""``Decision.as_json_line``: the text ``json.dumps(decision.as_json(), ensure_ascii=False)``
writes, for any texts, states, due instants and metric sets (``slabot evaluate`` writes it)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import get_args

from hypothesis import given
from hypothesis import strategies as st

from bot.compiled import Policy
from bot.engine import Decision, State, TargetDecision, evaluate
from bot.policy import TARGETS
from bot.ticket import Ticket

texts = st.text(st.characters(codec="utf-8"), max_size=12)
instants = st.none() | st.integers(-62_000_000_000, 200_000_000_000)
states = st.sampled_from(get_args(State))
other_metrics = st.lists(st.sampled_from(["next_reply", "agent_work", 'x"y', "é"]), unique=True)


def dumped(decision: Decision) -> str:
    return json.dumps(decision.as_json(), ensure_ascii=False) + "\n"


@given(
    ticket_id=texts,
    priority=texts,
    optional=st.lists(st.none() | texts, min_size=3, max_size=3),
    tags=st.lists(texts, max_size=3),
    notes=st.lists(texts, max_size=3),
    metrics=other_metrics,
    first_metrics=st.booleans(),
    clocks=st.lists(st.tuples(states, instants), min_size=7, max_size=7),
)
def test_the_line_is_what_json_dumps_writes(
    ticket_id: str,
    priority: str,
    optional: list[str | None],
    tags: list[str],
    notes: list[str],
    metrics: list[str],
    first_metrics: bool,
    clocks: list[tuple[State, int | None]],
) -> None:
    # Metrics other than the classic three come after them in the output, wherever they are
    # in the decision's targets.
    names = [*metrics, *TARGETS] if first_metrics else [*TARGETS, *metrics]
    targets = {
        name: TargetDecision(name, state, due)
        for name, (state, due) in zip(names, clocks, strict=False)
    }
    requested, plan, commitment = optional
    decision = Decision(
        ticket_id, priority, requested, plan, commitment, targets, tuple(tags), tuple(notes)
    )
    assert decision.as_json_line() == dumped(decision)


def test_the_shipped_policies_decisions_read_the_same(policies: dict[str, Policy]) -> None:
    now = datetime(2026, 11, 23, 12, tzinfo=UTC)
    for policy in policies.values():
        for created in ("2026-11-20T15:30:00+01:00", "2026-11-23T11:00:00Z"):
            for plan in policy.known_plans():
                ticket = Ticket.from_mapping(
                    {"id": f"T-{plan}", "created_at": created, "plan": plan, "channel": "web"}
                )
                decision = evaluate(ticket, policy, now)
                assert decision.as_json_line() == dumped(decision)
