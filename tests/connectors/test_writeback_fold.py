"""The shared write-back fold: one ticket's outbox items -> the one change it is owed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.writeback import WriteReport, fold, mapped_priority
from slabot.store.outbox import ClaimedItem, PermanentWriteError

START = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)
PRIORITIES = {"P1": "urgent", "P2": "high"}


def item(number: int, kind: str, payload: dict[str, Any]) -> ClaimedItem:
    created = START + timedelta(minutes=number)
    return ClaimedItem(number, "freshdesk", 7, kind, payload, f"key-{number}", 1, created, created)


def folded(*items: ClaimedItem) -> Any:
    return fold(
        items,
        helpdesk="Freshdesk",
        priority=lambda wanted: mapped_priority(
            wanted,
            PRIORITIES.get,
            PRIORITIES,
            helpdesk="Freshdesk",
            setting="freshdesk.priorities",
        ),
        due_field=lambda name, value: (f"cf_{name}", value) if name == "first_response" else None,
        assignee=lambda email: f"agent:{email}",
    )


def test_the_newest_item_of_a_kind_wins_whatever_the_claim_order() -> None:
    owed = folded(
        item(2, "set_priority", {"priority": "P1"}), item(1, "set_priority", {"priority": "P2"})
    )
    assert owed.priority == "urgent"


def test_a_tag_added_then_removed_is_only_removed() -> None:
    owed = folded(
        item(1, "set_tags", {"add": ["sla_breached", "vip"]}),
        item(2, "set_tags", {"remove": ["sla_breached"]}),
    )
    assert (owed.add_tags, owed.remove_tags) == ({"vip"}, {"sla_breached"})


def test_notes_join_in_order_and_blank_ones_are_dropped() -> None:
    owed = folded(
        item(1, "add_note", {"body": "first"}),
        item(2, "add_note", {"body": "  "}),
        item(3, "add_note", {"body": "second"}),
    )
    assert owed.note == "first\n\nsecond"
    assert folded().note is None


def test_due_fields_and_the_assignee_go_through_the_connectors_translation() -> None:
    owed = folded(
        item(1, "set_due_fields", {"fields": {"first_response": "2026-11-16T10:00:00Z"}}),
        item(2, "set_due_fields", {"fields": {"restoration": "2026-11-17T10:00:00Z"}}),
        item(3, "set_assignee", {"email": "ana@example.com"}),
    )
    assert owed.fields == {"cf_first_response": "2026-11-16T10:00:00Z"}
    assert owed.assignee == "agent:ana@example.com"


def test_a_priority_the_helpdesk_has_no_name_for_is_refused_naming_the_setting() -> None:
    with pytest.raises(PermanentWriteError, match=r"'P4' has no Freshdesk priority in freshdes"):
        folded(item(1, "set_priority", {"priority": "P4"}))


def test_an_unknown_kind_is_refused_naming_the_kinds_the_helpdesk_takes() -> None:
    with pytest.raises(PermanentWriteError, match="'set_colour' is not a Freshdesk write"):
        folded(item(1, "set_colour", {}))


def test_the_report_names_jiras_issues_as_its_tickets() -> None:
    report = WriteReport()
    report.issues += 2
    assert (report.tickets, report.issues) == (2, 2)
