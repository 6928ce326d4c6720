"""Edges of the engine: as-of-now reading, reopened tickets, bad instants, far years."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from engine_support import LOS_ANGELES, decide, local_iso, make_ticket

from bot.business_time import BusinessCalendar
from bot.compiled import Policy
from bot.engine import evaluate
from bot.errors import CalendarError, TicketError
from bot.explain import explain
from bot.ticket import Ticket
from slabot.cli import main
from slabot.policy_files import PolicyFileError, parse_policy

PREMIER_P2 = {
    "created_at": "2026-06-09T10:00:00-07:00",
    "priority": "P2",
    "plan": "premier",
    "environment": "production",
}


def test_a_reply_recorded_after_now_has_not_happened_yet(cloudtalk: Policy) -> None:
    decision = decide(
        cloudtalk,
        now="2026-06-09T11:00:00+02:00",
        created_at="2026-06-09T10:00:00+02:00",
        plan="professional",
        priority="P1",
        environment="production",
        first_response_at="2026-06-09T14:00:00+02:00",
    )
    assert decision.targets["first_response"].state == "running"
    assert decision.targets["first_response"].stopped_at is None


def test_a_pause_that_ends_after_now_is_still_running_at_now(zoom: Policy) -> None:
    decision = decide(
        zoom,
        now="2026-06-09T12:00:00-07:00",
        paused=[["2026-06-09T11:00:00-07:00", "2026-06-10T09:00:00-07:00"]],
        **PREMIER_P2,
    )
    assert decision.targets["restoration"].state == "paused"
    assert decision.targets["restoration"].due is None


@pytest.mark.parametrize(
    "field", ["first_response_at", "last_agent_update_at", "solved_at", "restoration_started_at"]
)
def test_an_event_before_the_ticket_was_created_is_refused(field: str) -> None:
    fields = {**PREMIER_P2, field: "2026-06-09T09:59:59-07:00", "status": "solved"}
    if field != "solved_at":
        fields["solved_at"] = "2026-06-09T12:00:00-07:00"
    with pytest.raises(TicketError, match=field):
        make_ticket(**fields)


def test_naive_instants_are_refused_by_the_ticket_the_engine_and_the_calendar(
    zoom: Policy,
) -> None:
    with pytest.raises(TicketError, match="created_at has no time zone"):
        Ticket(id="n", created_at=datetime(2026, 6, 9, 10))
    ticket = make_ticket(**PREMIER_P2)
    with pytest.raises(TicketError, match="no time zone"):
        evaluate(ticket, zoom, datetime(2026, 6, 9, 12))
    calendar = BusinessCalendar(LOS_ANGELES, (((9 * 3600, 17 * 3600),),) * 7)
    with pytest.raises(CalendarError, match="no time zone"):
        calendar.due(datetime(2026, 6, 9, 10), timedelta(hours=1))


def test_a_reopened_ticket_owes_its_next_update_from_the_reopening(zoom: Policy) -> None:
    decision = decide(
        zoom,
        now="2026-06-10T10:05:00-07:00",
        last_agent_update_at="2026-06-09T11:00:00-07:00",
        solved_at="2026-06-09T12:00:00-07:00",
        restoration_started_at="2026-06-10T10:00:00-07:00",
        **PREMIER_P2,
    )
    update = decision.targets["next_update"]
    assert local_iso(update.started_at, LOS_ANGELES) == "2026-06-10T10:00:00-07:00"
    assert update.state == "running"
    assert local_iso(update.due, LOS_ANGELES) == "2026-06-11T10:00:00-07:00"


def test_explain_counts_exactly_the_open_time_of_each_target(zoom: Policy) -> None:
    # Solved while an open-ended pause ran: the pause ends at the solve for the engine, and
    # the explanation must count the same intervals: one hour used before the pause.
    ticket = make_ticket(
        **{**PREMIER_P2, "plan": "premier_plus"},
        status="solved",
        solved_at="2026-06-09T12:00:00-07:00",
        paused=[["2026-06-09T11:00:00-07:00", None]],
    )
    text = explain(ticket, zoom, datetime(2026, 6, 10, 17, tzinfo=UTC))
    restoration = text.split("restoration:")[1].split("next update:")[0]
    assert "open time used: 1h of 8h" in restoration  # stopped: nothing is scheduled
    assert "scheduled" not in restoration
    assert "to Tue 2026-06-09 12:00 PDT" in restoration


def test_explain_time_used_and_time_scheduled_add_up_to_the_target(zoom: Policy) -> None:
    # Paused 11:00-12:00; at 13:00 the restoration has used 2h and has 6h scheduled before
    # its due instant (13:00-17:00, then Wednesday 09:00-11:00): the engine's 8h.
    ticket = make_ticket(
        **{**PREMIER_P2, "plan": "premier_plus"},
        status="open",
        paused=[["2026-06-09T11:00:00-07:00", "2026-06-09T12:00:00-07:00"]],
    )
    text = explain(ticket, zoom, datetime(2026, 6, 9, 20, tzinfo=UTC))
    restoration = text.split("restoration:")[1].split("next update:")[0]
    assert restoration.startswith(" due Wed 2026-06-10 11:00 PDT")
    assert "open time used so far: 2h of 8h" in restoration
    assert "open time scheduled until due: 6h" in restoration
    assert "Wed 2026-06-10 09:00-11:00       2h  (total 6h)" in restoration


def test_a_next_business_day_target_is_not_paused_by_waiting_on_the_customer() -> None:
    policy = Policy.from_mapping(
        {
            "name": "nbd",
            "priorities": [{"name": "P1", "label": "Urgent"}],
            "default_priority": "P1",
            "calendars": {
                "office": {"timezone": "Europe/Paris", "hours": {"weekdays": ["09:00-17:00"]}}
            },
            "plans": {
                "std": {
                    "commitment": "sla",
                    "calendar": "office",
                    "targets": {"P1": {"restoration": "next_business_day"}},
                }
            },
        }
    )
    ticket = make_ticket(
        created_at="2026-06-09T10:00:00+02:00",
        plan="std",
        status="pending",
        paused=[["2026-06-09T11:00:00+02:00", None]],
    )
    restoration = evaluate(ticket, policy, datetime(2026, 6, 9, 12, tzinfo=UTC)).targets[
        "restoration"
    ]
    assert restoration.state == "running"
    assert restoration.due == datetime(2026, 6, 10, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    ("plan_calendar", "target", "phrase"),
    [
        ("24x7", "next_business_day", "needs a business calendar"),
        ("office", "99999999h", "8760h"),
    ],
)
def test_policy_targets_that_cannot_work_are_refused(
    plan_calendar: str, target: str, phrase: str
) -> None:
    text = (
        "name: x\npriorities:\n  - {name: P1, label: a}\ndefault_priority: P1\n"
        "calendars:\n  office:\n    hours: {weekdays: ['09:00-17:00']}\n"
        f"plans:\n  std:\n    commitment: sla\n    calendar: {plan_calendar}\n"
        f"    targets:\n      P1: {{first_response: {target}}}\n"
    )
    with pytest.raises(PolicyFileError) as error:
        parse_policy(text, "x.yaml")
    problems = [(p.line, p.field, p.message) for p in error.value.problems]
    assert any(
        line == 13 and field == "plans.std.targets.P1.first_response" and phrase in message
        for line, field, message in problems
    ), problems


def test_matrix_keys_that_differ_only_in_case_are_refused() -> None:
    text = yaml.safe_dump(
        {
            "name": "m",
            "priorities": [{"name": "P1", "label": "a"}, {"name": "P2", "label": "b"}],
            "default_priority": "P2",
            "classification": {
                "matrix": {"table": {"High": {"high": "P1"}, "high": {"high": "P2"}}}
            },
            "plans": {"s": {"commitment": "sla"}},
        }
    )
    with pytest.raises(PolicyFileError, match="differ only in case"):
        parse_policy(text, "m.yaml")


def test_a_ticket_far_in_the_past_does_not_break_later_tickets(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # One calendar compiles a window of years: a ticket centuries away must not make it too
    # wide for the tickets after it (the answers must not depend on the input order).
    fields = {k: v for k, v in PREMIER_P2.items() if k != "created_at"}
    stdin = "".join(
        json.dumps({"id": ticket_id, "created_at": created, **fields}) + "\n"
        for ticket_id, created in (
            ("old", "1100-01-04T10:00:00Z"),
            ("later", "2028-01-04T10:00:00Z"),
            ("old-again", "1100-01-05T10:00:00Z"),
        )
    )
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    status = main(
        ["evaluate", "--policy", "config/policies/zoom.yaml", "--now", "2026-11-23T12:00:00Z"]
    )
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert status == 0
    assert [o["id"] for o in out] == ["old", "later", "old-again"]
    assert out[1]["due"]["first_response"] == "2028-01-04T21:00:00Z"


def test_instants_outside_the_supported_years_are_refused_naming_the_field() -> None:
    with pytest.raises(TicketError, match=r"'created_at'.*years 1000-9000"):
        make_ticket(**{**PREMIER_P2, "created_at": "0001-01-01T10:00:00Z"})
    calendar = BusinessCalendar(LOS_ANGELES, (((9 * 3600, 17 * 3600),),) * 7)
    with pytest.raises(CalendarError, match="years 1000-9000"):
        calendar.due(datetime(9999, 1, 1, tzinfo=UTC), timedelta(hours=1))


def test_bad_lines_become_error_objects_and_later_lines_are_still_evaluated(
    tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = json.dumps({"id": "ok", **PREMIER_P2}).encode()
    path = tmp_path / "in.jsonl"
    path.write_bytes(good + b"\n\xff\n" + b"[" * 100_000 + b"\n" + good + b"\n")
    status = main(
        [
            "evaluate",
            "--policy",
            "config/policies/zoom.yaml",
            "--now",
            "2026-06-09T12:00:00Z",
            str(path),
        ]
    )
    captured = capsys.readouterr()
    out = [json.loads(line) for line in captured.out.splitlines()]
    assert status == 1
    assert [o.get("id") for o in out] == ["ok", None, None, "ok"]
    assert out[1]["error"] == "the line is not valid UTF-8"
    assert "nested too deeply" in out[2]["error"]
    assert "Traceback" not in captured.err


# Values the policy cannot use: ignored as if not given, noted and tagged, never refused (a
# refused ticket is a ticket slabot never stores: issue 13).


def test_a_requested_priority_the_policy_lacks_is_ignored_and_tagged(cloudtalk: Policy) -> None:
    fields = {"created_at": "2026-06-09T10:00:00+02:00", "plan": "professional"}
    decision = decide(cloudtalk, now="2026-06-09T10:00:00+02:00", priority="P4", **fields)
    without = decide(cloudtalk, now="2026-06-09T10:00:00+02:00", **fields)
    assert (decision.priority, decision.requested_priority) == ("P3", None)
    assert decision.targets == without.targets
    assert decision.unknown_values == (("priority", "P4"),)
    assert decision.tags == ("sla_unknown_value",)
    assert decision.notes[-1] == (
        "priority 'P4' cannot be used by policy 'cloudtalk' (its priorities are P1, P2, P3): "
        "ignored (as if none was asked)"
    )


@pytest.mark.parametrize(
    ("urgency", "impact", "unknown"),
    [("critical", "high", ("urgency", "critical")), ("high", "huge", ("impact", "huge"))],
)
def test_a_matrix_value_the_policy_lacks_leaves_the_matrix_unused(
    zmanda: Policy, urgency: str, impact: str, unknown: tuple[str, str]
) -> None:
    now = "2026-06-09T10:00:00+00:00"
    decision = decide(zmanda, now=now, created_at=now, urgency=urgency, impact=impact)
    assert decision.priority == zmanda.spec.default_priority
    assert decision.unknown_values == (unknown,)
    assert "sla_unknown_value" in decision.tags
    assert f"{unknown[0]} {unknown[1]!r} cannot be used by policy 'zmanda'" in decision.notes[-2]


def test_a_reclassification_to_a_level_the_policy_dropped_is_ignored(cloudtalk: Policy) -> None:
    # Stored reclassifications outlive policy edits: before, this raised a KeyError (not
    # even a TicketError) in the caps, which stopped a whole poll.
    from bot.ticket import Reclassification

    created = datetime(2026, 6, 9, 8, tzinfo=UTC)
    change = Reclassification(priority="P4", actor="ana", reason="minor", at=created)
    ticket = Ticket(id="1", created_at=created, plan="professional", reclassification=change)
    decision = evaluate(ticket, cloudtalk, created + timedelta(hours=1))
    assert decision.priority == "P3"
    assert decision.unknown_values == (("reclassification", "P4"),)
    assert "the agent's reclassification is ignored" in decision.notes[-1]


def test_a_tag_setting_of_null_keeps_the_note_but_no_tag(cloudtalk: Policy) -> None:
    untagged = Policy.from_mapping({**cloudtalk.spec.model_dump(), "unknown_value_tag": None})
    now = "2026-06-09T10:00:00+02:00"
    decision = decide(untagged, now=now, created_at=now, plan="basic", priority="P9")
    assert decision.tags == () and decision.unknown_values == (("priority", "P9"),)
