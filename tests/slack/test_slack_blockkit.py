"""Every message, modal and Home view, in every language, within Slack's Block Kit limits;
the catalogs agree with English key by key and placeholder by placeholder."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from slabot.fakes.slack_blocks import block_problems, view_problems
from slabot.slack import cards
from slabot.slack.blocks import MAX_BLOCKS, cut, fit, sections
from slabot.slack.digests import digest
from slabot.slack.home import home_view
from slabot.slack.i18n import CATALOGS, LANGUAGES, catalog, language_of
from slabot.slack.modals import notice_modal, reclassify_modal, snooze_modal
from slabot.slack.nudge_messages import NudgeSubject, nudge_message
from slabot.slack.store_access import TicketView
from tests.slack.slack_support import MONDAY_0900_LA, Harness
from tests.slack.test_slack_digests import channel

LONG = "x" * 5000
PARIS = ZoneInfo("Europe/Paris")


def test_every_catalog_has_the_english_keys_and_placeholders() -> None:
    english = CATALOGS["en"]
    for language in LANGUAGES:
        t = CATALOGS[language]
        assert set(t.messages) == set(english.messages), language
        for key in english.messages:
            assert t.placeholders(key) == english.placeholders(key), (language, key)
        assert len(t.weekdays) == 7 and len(t.months) == 12


def test_locales_pick_a_catalog() -> None:
    assert [language_of(x) for x in ("fr-FR", "it_IT", "pl-PL", "en-GB", "de-DE", None)] == [
        "fr",
        "it",
        "pl",
        "en",
        "en",
        "en",
    ]
    assert language_of("es-ES", default="it") == "it"
    assert catalog("xx").language == "en"


def test_instants_are_written_in_each_language() -> None:
    friday = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)
    assert [catalog(x).instant(friday, PARIS) for x in LANGUAGES] == [
        "Fri 20 Nov 16:30 CET",
        "ven. 20 nov. 16:30 CET",
        "ven 20 nov 16:30 CET",
        "pt. 20 lis 16:30 CET",
    ]


def test_the_builders_cut_and_cap() -> None:
    assert cut("abcdef", 4) == "abc…"
    long_text = "\n".join(f"line {n} " + "y" * 80 for n in range(200))
    assert all(len(b["text"]["text"]) <= 3000 for b in sections(long_text))
    capped = fit([{"type": "divider"}] * 60, lambda n: f"{n} more")
    assert len(capped) == MAX_BLOCKS and capped[-1]["elements"][0]["text"] == "11 more"


@pytest.fixture
def heavy(harness: Harness) -> TicketView:
    """A ticket whose texts are as long as a helpdesk lets them be, paused many times."""
    created = MONDAY_0900_LA - timedelta(days=30)
    harness.clock.now = created
    harness.ingest(
        created_at=created, updated_at=created, shown={"assignee_email": "ana@example.com"}
    )
    at = created
    for n in range(30):  # thirty waits on the customer: a long explanation
        at += timedelta(hours=7)
        harness.clock.now = at
        harness.ingest(
            created_at=created, updated_at=at, status="pending" if n % 2 == 0 else "open"
        )
    harness.clock.now = at + timedelta(hours=1)
    harness.tickets.reclassify("zendesk", "1001", "P3", "A" * 300, LONG, "slack")
    view = harness.services.store.view(1, harness.clock.now)
    assert view is not None
    return view


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_view_fits_slacks_limits(harness: Harness, heavy: TicketView, language: str) -> None:
    t = catalog(language)
    for zone in (PARIS, None):
        assert block_problems(cards.card(t, heavy, zone)) == []
        assert block_problems(cards.explanation(t, heavy, zone)) == []
        subject = NudgeSubject(
            nudge_id=1,
            target="first_response",
            percent=75,
            cycle_started_at=heavy.decision.targets["first_response"].started_at or heavy.now,
            snoozed_until=heavy.now + timedelta(hours=1),
            snoozed_by="U0ANA",
            snooze_reason=LONG,
            queue="q" * 500,
        )
        assert block_problems(nudge_message(t, heavy, subject, zone).blocks) == []
        assert block_problems(nudge_message(t, None, subject, zone, label=LONG).blocks) == []
        tickets = [(heavy, ["first_response", "restoration", "next_update"])] * 60
        assert view_problems(home_view(t, tickets, zone, heavy.now, 24)) == []
    assert block_problems(cards.help_blocks(t)) == []
    assert block_problems(cards.notice(t("error.internal") + LONG)) == []
    assert view_problems(reclassify_modal(t, heavy)) == []
    assert view_problems(snooze_modal(t, 7, 4, heavy.label, t("target.restoration"), LONG)) == []
    assert view_problems(notice_modal(t, t("modal.refused.title"), LONG * 3)) == []
    for key in t.messages:
        if (key.startswith("modal.") and key.endswith((".title", ".submit"))) or key in (
            "modal.cancel",
            "modal.close",
        ):
            assert len(t(key)) <= 24, (language, key)
        if key.startswith("button."):
            assert len(t(key, hours=4)) <= 75, (language, key)


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_digest_of_many_tickets_fits_in_every_language(harness: Harness, language: str) -> None:
    for n in range(45):
        created = MONDAY_0900_LA - timedelta(days=3, minutes=n)
        harness.clock.now = created
        harness.ingest(
            external_key=str(100000000 + n),
            created_at=created,
            updated_at=created,
            plan=["premier", "standard", "premier_plus"][n % 3],
            priority=["P1", "P2", "P3", "P4"][n % 4],
        )
    harness.clock.now = MONDAY_0900_LA
    for max_tickets in (1, 40):
        blocks = digest(
            harness.services.store,
            harness.clock,
            channel(language=language, max_tickets=max_tickets),
        )
        assert blocks is not None
        assert block_problems(blocks) == []
        assert len(blocks) <= MAX_BLOCKS


def with_metrics(view: TicketView) -> TicketView:
    """``view`` with a decision that also reports three built-in metrics beyond the classic
    three and a policy's own ``vendor_hold``, each running for two hours on 24x7."""
    from dataclasses import replace

    from bot.engine import TargetDecision

    start = int(view.now.timestamp()) - 3600
    extra = {
        name: TargetDecision(name, "running", start + 7200, start, None, 7200, "24x7")
        for name in ("next_reply", "agent_work", "requester_wait", "vendor_hold")
    }
    targets = {**view.decision.targets, **extra}
    return replace(view, decision=replace(view.decision, targets=targets))


def test_the_card_names_every_metric_of_the_decision(heavy: TicketView) -> None:
    """A policy's metrics beyond the classic three are on the card, by their names in each
    language (a policy's own metric by its name): no catalog key is missing for them."""
    import json

    view = with_metrics(heavy)
    for language in LANGUAGES:
        t = catalog(language)
        text = json.dumps(cards.card(t, view, None), ensure_ascii=False)
        for name in ("next_reply", "agent_work", "requester_wait"):
            assert t(f"target.{name}") in text, (language, name)
        assert "vendor hold" in text, language


def test_the_dashboard_ticket_page_has_a_timeline_for_every_metric(heavy: TicketView) -> None:
    """The dashboard's ticket page (``board.ticket_clocks``) shows every metric the decision
    reports, the classic three first, each with its name, due instant and state."""
    from slabot.service import board

    view = with_metrics(heavy)
    clocks = board.ticket_clocks(view)
    assert [c.title for c in clocks] == [
        "First response",
        "Restoration",
        "Next update",
        "Next reply",
        "Agent work time",
        "Requester wait time",
        "Vendor hold",
    ]
    decided = view.decision.targets["vendor_hold"]
    (timeline,) = [c for c in clocks if c.target == "vendor_hold"]
    assert (timeline.due, timeline.state) == (decided.due, "running")
