"""End to end: a ticket's whole life through the running service, the real clients and the fakes.

Each test starts the service as ``slabot run`` wires it (``harness.start_service``) on the
demo's clock, and plays one ticket: the customer creates it in the helpdesk -> a signed
webhook -> slabot writes back priority, due dates and tags -> the clock runs to 75% of a
target -> a nudge in Slack -> an agent presses Reclassify and submits the modal (signed
requests to ``/slack/events``) -> the helpdesk gets the new priority and an internal note ->
the clock runs past a due instant -> the breach notice -> the digest lists the ticket.
Every expected value (priorities, tags, due instants, the instants of 75%) is computed with
the policy engine from the ticket's facts, and compared with what the fakes show and were
sent. Once for Zendesk (on PostgreSQL), once for Jira, and once for a Zendesk ticket that
waits on the customer over a weekend and a public holiday (taken from ``holidays``).

Each run's whole log (the service's JSON log at DEBUG, and everything written to standard
output and error) is then searched for every secret it was configured with.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import holidays
import pytest

from bot.ticket import Ticket
from slabot.demo.environment import (
    JIRA_ENVIRONMENT,
    JIRA_PLAN,
    SUPPORT_CHANNEL,
    ZD_ENVIRONMENT,
    DemoSystems,
)
from slabot.fakes.jira import BOT as JIRA_BOT
from tests.e2e.conftest import DATABASE_PASSWORD
from tests.e2e.harness import (
    DASHBOARD_TOKEN,
    Expected,
    RunningService,
    bot_audits,
    internal_notes,
    jira_shown,
    jira_shows,
    slack_messages,
    start_service,
    texts,
    wait_until,
    zendesk_shown,
    zendesk_shows,
)

pytestmark = pytest.mark.slow

MONDAY = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)
"""Monday 16 November 2026, 09:00 UTC (10:00 in Berlin and Bratislava)."""
LEAD = "lead@example.com (Slack U0AGENT)"
"""How the audit names the agent who reclassifies (``AGENT``, lead@example.com in Slack)."""
TARGET_NAMES = {
    "first_response": "First response",
    "restoration": "Restoration",
    "next_update": "Next update",
}
REQUESTER, AGENT_USER, ORGANIZATION = 501, 601, 701
JIRA_CUSTOMER = "5f0c0a5e1b2c3d0070a1c0c0"
SUP_1 = ("SUP-1", "jira:10001")
"""Slack names a Jira issue by its key once the connector passes it on (``Snapshot.shown``),
by its id until then."""


@pytest.fixture
def running(systems: DemoSystems, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """``running(database_url, start)`` starts the service; it is stopped after the test."""
    started: list[RunningService] = []

    def start(database_url: str, at: datetime) -> RunningService:
        service = start_service(systems, tmp_path, database_url, at)
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


# --- the steps every flow shares --------------------------------------------------------------


Label = str | tuple[str, ...]
"""How Slack names a ticket (``ZD-1001``); a tuple gives the names it may go by."""


def names(label: Label) -> tuple[str, ...]:
    return (label,) if isinstance(label, str) else label


def messages_about(systems: DemoSystems, label: Label) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        m
        for m in slack_messages(systems)
        if any(f"{n}:" in str(m[2]["text"]) for n in names(label))
    ]


def posted(systems: DemoSystems) -> int:
    """Top-level messages: one per ticket while it is open (replies go in its thread)."""
    return sum(1 for _, _, m in slack_messages(systems) if not m.get("thread_ts"))


def thread_replies(systems: DemoSystems) -> list[str]:
    return [str(m["text"]) for _, _, m in slack_messages(systems) if m.get("thread_ts")]


def nudge_for(systems: DemoSystems, label: Label, target: str) -> tuple[str, str, dict[str, Any]]:
    """The latest message about ``label``'s ``target`` (one per clock cycle)."""
    found = [m for m in messages_about(systems, label) if TARGET_NAMES[target] in m[2]["text"]]
    if not found:
        shown = [m[2]["text"] for m in slack_messages(systems)]
        raise AssertionError(f"no message about {label}'s {target} in {shown}")
    return found[-1]


def reach(service: RunningService, instant: datetime, label: str) -> None:
    """Run the clock to one second before ``instant`` (nothing new may be posted), then to it."""
    before = posted(service.systems)
    service.advance_to(instant - timedelta(seconds=1))
    service.settle()
    assert posted(service.systems) == before, f"{label}: a message came before its instant"
    service.advance_to(instant)


def reclassify_from_slack(
    service: RunningService, label: Label, target: str, priority: str, reason: str
) -> dict[str, Any]:
    """An agent presses Reclassify on the nudge about ``target`` and submits the modal."""
    slack = service.systems.slack
    channel, ts, message = nudge_for(service.systems, label, target)
    opened = len(slack.calls_to("views.open"))
    pressed = service.press(message, channel, ts, "sla_reclassify")
    assert pressed.status == 200, pressed.text
    call = slack.wait_calls("views.open", opened + 1, timeout=10)[opened]
    view = call.args["view"]
    view = json.loads(view) if isinstance(view, str) else view
    assert view["callback_id"] == "sla_reclassify_modal"
    submitted = service.submit(
        view, call.response["view"]["id"], {"priority": priority, "reason": reason}
    )
    assert submitted.status == 200, submitted.text
    answer = submitted.json()
    assert answer["response_action"] == "update", answer
    assert f"to {priority}" in texts(answer["view"]["blocks"])
    return view


def run_digest(service: RunningService, label: Label, *lines: str) -> str:
    """The scheduled digest, run now: it must list ``label`` with each of ``lines``."""
    before = posted(service.systems)
    service.run_job("slack-digest:")
    wait_until(lambda: posted(service.systems) > before, "the digest")
    service.settle()
    digests = [m for m in slack_messages(service.systems) if "SLA digest" in str(m[2]["text"])]
    assert len(digests) == 1, digests
    channel, _, message = digests[0]
    assert channel == SUPPORT_CHANNEL
    body = texts(message["blocks"])
    for line in body.splitlines():
        if any(n in line for n in names(label)) and all(part in line for part in lines):
            return body
    raise AssertionError(f"the digest does not list {label} with {lines}:\n{body}")


def check_dashboard(service: RunningService, label: Label) -> None:
    """The dashboard is closed without its token (never taken from the address) and lists
    the ticket with it."""
    assert service.get("/").status == 401
    assert service.get("/", {"Authorization": "Bearer wrong-token"}).status == 401
    assert service.get(f"/?token={DASHBOARD_TOKEN}").status == 401
    page = service.get("/", {"Authorization": f"Bearer {DASHBOARD_TOKEN}"})
    assert page.status == 200 and any(n in page.text for n in names(label))


def assert_no_secrets(
    service: RunningService, capfd: pytest.CaptureFixture[str], *extra: str
) -> None:
    service.stop()
    out, err = capfd.readouterr()
    log = service.log.getvalue()
    assert "slack" in log and "webhook" in log, "the log captured nothing"
    secrets = [*service.systems.secrets(), DASHBOARD_TOKEN, *extra]
    for name, text in (("log", log), ("stdout", out), ("stderr", err)):
        for secret in secrets:
            assert secret not in text, f"a secret ({secret[:4]}...) appears in the {name}"


# --- Zendesk ---------------------------------------------------------------------------------


def test_a_zendesk_ticket_from_creation_to_the_digest(
    systems: DemoSystems, running: Any, pg_url: str, capfd: pytest.CaptureFixture[str]
) -> None:
    service: RunningService = running(pg_url, MONDAY)
    zendesk = systems.zendesk
    zendesk.add_user(REQUESTER, "end-user", time_zone="Berlin")
    zendesk.add_organization(
        ORGANIZATION,
        organization_fields={"support_plan": "premier", "country": "de", "time_zone": "Berlin"},
    )
    # A P1 asked for by web form, in production: zoom wants P1s by phone (a tag, no cap).
    zendesk.add_ticket(
        1001,
        requester_id=REQUESTER,
        organization_id=ORGANIZATION,
        priority="urgent",
        custom_fields={ZD_ENVIRONMENT: "env_production"},
    )
    expected = Expected(
        "zoom",
        Ticket(
            id="1001",
            created_at=MONDAY,
            priority="P1",
            plan="premier",
            environment="production",
            channel="web",
            customer_timezone="Europe/Berlin",
            customer_country="DE",
            status="new",
        ),
    )
    service.zendesk_webhook(1001)
    service.settle()
    decision = expected.at(MONDAY)
    assert decision.tags == ("sla_p1_not_by_phone",)
    assert zendesk_shown(systems, 1001) == zendesk_shows(decision)
    # Zendesk already showed the right priority: one update, with the tag and the due dates
    # (its trigger's echo and a repeated webhook change nothing).
    service.zendesk_webhook(1001)
    service.settle()
    (write,) = bot_audits(systems, 1001)
    assert [e["field_name"] for e in write["events"]] == ["tags"]

    # 75% of the first response's hour (and of the next update's): two nudges, not before,
    # in one message per ticket: the second is a reply in the first one's thread.
    threshold = expected.threshold("first_response", 0.75, MONDAY)
    assert threshold == expected.threshold("next_update", 0.75, MONDAY)
    reach(service, threshold, "the 75% nudges")
    wait_until(lambda: posted(systems) + len(thread_replies(systems)) == 2, "the two nudges")
    service.settle()
    for target in ("first_response", "next_update"):
        _, _, message = nudge_for(systems, "ZD-1001", target)
        assert "75%" in message["text"]
    assert posted(systems) == 1 and len(thread_replies(systems)) == 1

    # A lead reclassifies from the nudge: not a full outage, there is a workaround.
    reason = "a workaround exists: only the exports fail"
    reclassify_from_slack(service, "ZD-1001", "first_response", "P2", reason)
    decision = expected.reclassified("P2", LEAD, reason, threshold)
    service.settle()
    assert zendesk_shown(systems, 1001) == zendesk_shows(decision)
    assert [n for n in internal_notes(systems, 1001) if reason in n] == internal_notes(
        systems, 1001
    )
    assert len(internal_notes(systems, 1001)) == 1
    # The open nudges now say when the new due instants are, in place.
    _, _, message = nudge_for(systems, "ZD-1001", "first_response")
    assert message["history"], "the nudge was not rewritten"

    # The P2 first response (4 business hours in Berlin) passes: the breach notice.
    due = decision.targets["first_response"].due
    assert due is not None
    reach(service, due, "the breach")
    wait_until(
        lambda: "breached" in nudge_for(systems, "ZD-1001", "first_response")[2]["text"],
        "the breach notice",
    )
    service.settle()
    assert posted(systems) == 1, "the breach rewrites the 75% message in place"
    wait_until(
        lambda: any("is breached" in text for text in thread_replies(systems)),
        "the breach's reply in the ticket's thread",
    )
    assert expected.at(due).targets["first_response"].state == "breached"

    run_digest(service, "ZD-1001", "First response", "breached")
    check_dashboard(service, "ZD-1001")
    assert systems.slack.problems == []
    assert_no_secrets(service, capfd, DATABASE_PASSWORD)


# --- Jira ------------------------------------------------------------------------------------


def test_a_jira_issue_from_creation_to_the_digest(
    systems: DemoSystems, running: Any, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    service: RunningService = running(f"sqlite:///{tmp_path / 'slabot.db'}", MONDAY)
    jira = systems.jira
    jira.add_user(JIRA_CUSTOMER, "Customer", account_type="customer", time_zone="Europe/Bratislava")
    # No priority chosen, in production, on the advanced plan: cloudtalk's default P3.
    delivery = jira.add_issue(
        1,
        reporter=JIRA_CUSTOMER,
        priority=None,
        fields={JIRA_PLAN: {"value": "Advanced"}, JIRA_ENVIRONMENT: {"value": "Production"}},
    )
    expected = Expected(
        "cloudtalk",
        Ticket(id="10001", created_at=MONDAY, plan="advanced", environment="production"),
    )
    service.jira_webhook(delivery)
    service.settle()
    decision = expected.at(MONDAY)
    assert decision.priority == "P3"
    assert jira_shown(systems, 1) == jira_shows(decision, "Europe/Bratislava")

    # 75% of six business hours in Bratislava.
    threshold = expected.threshold("first_response", 0.75, MONDAY)
    reach(service, threshold, "the 75% nudge")
    wait_until(lambda: posted(systems) == 1, "the nudge")
    _, _, message = nudge_for(systems, SUP_1, "first_response")
    assert "75%" in message["text"]

    # Two teams are blocked: P2, whose three business hours have already run out.
    reason = "two teams cannot take calls; no workaround"
    reclassify_from_slack(service, SUP_1, "first_response", "P2", reason)
    decision = expected.reclassified("P2", LEAD, reason, threshold)
    service.settle()
    assert jira_shown(systems, 1) == jira_shows(decision, "Europe/Bratislava")
    comments = [c for c in jira.issue_comments(1) if not c["jsdPublic"]]
    assert len(comments) == 1 and reason in json.dumps(comments[0]["body"])

    # The breach: due before the reclassification, noticed at the next scan.
    assert decision.targets["first_response"].state == "breached"
    wait_until(
        lambda: "breached" in nudge_for(systems, SUP_1, "first_response")[2]["text"],
        "the breach notice",
    )
    service.settle()
    assert posted(systems) == 1
    # Jira echoed every edit slabot made; none of them was taken for a person's change: the
    # priority was written twice (the default, then the reclassification) and never again.
    # (The first due date may land with the default's edit or in one of its own, as the
    # outbox's flush happens to meet them.)
    edits = jira.histories["10001"]
    assert {edit["author"]["accountId"] for edit in edits} == {JIRA_BOT}
    written = [i["toString"] for edit in edits for i in edit["items"] if i["field"] == "priority"]
    assert written == ["Medium", "High"]
    assert jira_shown(systems, 1) == jira_shows(decision, "Europe/Bratislava")

    run_digest(service, SUP_1, "First response", "breached")
    check_dashboard(service, SUP_1)
    assert systems.slack.problems == []
    assert_no_secrets(service, capfd)


# --- a ticket waiting on the customer over a weekend and a public holiday ---------------------


def thanksgiving(year: int) -> datetime:
    """Thanksgiving in the United States, from the holidays package (never hard-coded)."""
    found = holidays.country_holidays("US", years=year, language="en_US")
    day = next(day for day, name in found.items() if "Thanksgiving" in name)
    return datetime.combine(day, datetime.min.time(), LOS_ANGELES)


LOS_ANGELES = ZoneInfo("America/Los_Angeles")


def test_a_ticket_waiting_on_the_customer_over_a_weekend_and_a_holiday(
    systems: DemoSystems, running: Any, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    holiday = thanksgiving(2026)
    created = holiday - timedelta(days=1) + timedelta(hours=15)  # Wednesday 15:00 there
    friday = holiday + timedelta(days=1, hours=9)
    monday = holiday + timedelta(days=4, hours=9)
    assert (created.weekday(), friday.weekday(), monday.weekday()) == (2, 4, 0)
    service: RunningService = running(f"sqlite:///{tmp_path / 'slabot.db'}", created)
    zendesk = systems.zendesk
    zendesk.add_user(REQUESTER, "end-user", time_zone="Pacific Time (US & Canada)")
    zendesk.add_user(AGENT_USER, "agent")
    zendesk.add_organization(
        ORGANIZATION,
        organization_fields={
            "support_plan": "premier",
            "country": "us",
            "time_zone": "America/Los_Angeles",
        },
    )
    zendesk.add_ticket(
        2001,
        requester_id=REQUESTER,
        organization_id=ORGANIZATION,
        created_at=created,
        priority="high",
        custom_fields={ZD_ENVIRONMENT: "env_production"},
    )
    expected = Expected(
        "zoom",
        Ticket(
            id="2001",
            created_at=created,
            priority="P2",
            plan="premier",
            environment="production",
            channel="web",
            customer_timezone="America/Los_Angeles",
            customer_country="US",
            status="new",
        ),
    )
    service.zendesk_webhook(2001)
    service.settle()
    decision = expected.at(created)
    # Four business hours: two on Wednesday, none on Thanksgiving, two on Friday.
    assert decision.targets["first_response"].due == friday + timedelta(hours=2)
    assert zendesk_shown(systems, 2001) == zendesk_shows(decision)

    # Over the holiday nobody updates the customer: the next update (24 h, around the
    # clock) breaches on Thursday; the first response (business hours) does not.
    service.advance_to(friday)
    wait_until(lambda: posted(systems) == 1, "the next update's breach notice")
    service.settle()
    _, _, message = nudge_for(systems, "ZD-2001", "next_update")
    assert "breached" in message["text"] and posted(systems) == 1

    # Friday 09:00: the agent answers and waits on the customer over the weekend.
    zendesk.agent_update(
        2001, AGENT_USER, at=friday, public_reply="Can you send the logs?", status="pending"
    )
    service.zendesk_webhook(2001)
    expected.update(
        status="pending",
        first_response_at=friday,
        last_agent_update_at=friday,
        paused=((friday, None),),
    )
    service.settle()
    decision = expected.at(friday)
    assert decision.targets["first_response"].state == "met"
    assert decision.targets["restoration"].state == "paused"
    assert zendesk_shown(systems, 2001) == zendesk_shows(decision)
    wait_until(
        lambda: "after its due time" in nudge_for(systems, "ZD-2001", "next_update")[2]["text"],
        "the breach notice to say the update came late",
    )

    # The weekend passes while the ticket waits: nothing is nudged.
    for day in range(1, 4):
        service.advance_to(friday + timedelta(days=day))
        service.settle()
    assert posted(systems) == 1

    # Monday 09:00: the customer answers; the clocks run again.
    zendesk.agent_update(2001, REQUESTER, at=monday, public_reply="Logs attached", status="open")
    service.zendesk_webhook(2001)
    expected.update(status="open", paused=((friday, monday),))
    service.settle()
    decision = expected.at(monday)
    assert zendesk_shown(systems, 2001) == zendesk_shows(decision)

    # 75% of the restoration's eight business hours: two on Wednesday, Thanksgiving and the
    # weekend skipped, the pause not counted, four on Monday.
    threshold = expected.threshold("restoration", 0.75, monday)
    assert threshold == monday + timedelta(hours=4)
    reach(service, threshold, "the restoration's 75% nudge")
    wait_until(lambda: posted(systems) == 2, "the 75% nudge")
    _, _, message = nudge_for(systems, "ZD-2001", "restoration")
    assert "75%" in message["text"]

    # A workaround makes it a P3: no restoration target any more; a note says why.
    reason = "customer restarts the bridge nightly; a fix can wait"
    reclassify_from_slack(service, "ZD-2001", "restoration", "P3", reason)
    decision = expected.reclassified("P3", LEAD, reason, threshold)
    service.settle()
    assert zendesk_shown(systems, 2001) == zendesk_shows(decision)
    assert decision.targets["restoration"].state == "none"
    assert len(internal_notes(systems, 2001)) == 1 and reason in internal_notes(systems, 2001)[0]

    # P3's next update (84 h around the clock from Friday's answer, less the pause): its
    # 75% nudge, then its breach, which rewrites that message.
    due = decision.targets["next_update"].due
    assert due == monday + timedelta(hours=84)
    nudge_at = expected.threshold("next_update", 0.75, threshold)
    reach(service, nudge_at, "the next update's 75% nudge")
    wait_until(lambda: posted(systems) == 3, "the next update's 75% nudge")
    reach(service, due, "the next update's breach")
    wait_until(
        lambda: "breached" in nudge_for(systems, "ZD-2001", "next_update")[2]["text"],
        "the breach notice",
    )
    service.settle()
    breaches = [m for m in messages_about(systems, "ZD-2001") if "breached" in m[2]["text"]]
    assert len(breaches) == 1 and TARGET_NAMES["next_update"] in breaches[0][2]["text"]
    assert posted(systems) == 3

    run_digest(service, "ZD-2001", "Next update", "breached")
    assert systems.slack.problems == []
    assert_no_secrets(service, capfd)
