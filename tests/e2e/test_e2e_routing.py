"""End to end: routing rules choose each ticket's policy in the running service (issue 17),
on SQLite and on PostgreSQL, through the real clients and the fakes.

The demo config routes Jira to cloudtalk, Zendesk's Zmanda brand to zmanda and the other
Zendesk tickets to zoom. A Zmanda-brand ticket arrives by webhook, is evaluated under
zmanda and gets zmanda's due dates written back; an agent moves it to the Zoom brand and it
is evaluated under zoom from its original creation, with the move in its history.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.ticket import Ticket
from slabot.demo.environment import ZD_ENVIRONMENT, ZMANDA_BRAND, ZOOM_BRAND, DemoSystems
from slabot.store.models import StoredDecision, StoredTicket, TicketEvent
from tests.e2e.databases import fresh_postgres
from tests.e2e.harness import (
    DASHBOARD_TOKEN,
    Expected,
    RunningService,
    start_service,
    zendesk_shown,
    zendesk_shows,
)

pytestmark = pytest.mark.slow

MONDAY = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)
REQUESTER, ORGANIZATION, AGENT_ID = 501, 701, 9001


@pytest.fixture(params=["sqlite", "postgresql"])
def service(
    request: pytest.FixtureRequest, systems: DemoSystems, tmp_path: Path
) -> Iterator[RunningService]:
    if request.param == "sqlite":
        running = start_service(systems, tmp_path, f"sqlite:///{tmp_path / 'slabot.db'}", MONDAY)
        try:
            yield running
        finally:
            running.stop()
        return
    with fresh_postgres() as url:
        running = start_service(systems, tmp_path, url, MONDAY)
        try:
            yield running
        finally:
            running.stop()


def stored(service: RunningService, key: str) -> tuple[StoredTicket, StoredDecision, list[str]]:
    engine = service.service.runtime.engine
    with Session(engine) as session:
        row = session.scalars(select(StoredTicket).where(StoredTicket.external_key == key)).one()
        decision = session.get(StoredDecision, row.id)
        assert decision is not None
        kinds = list(
            session.scalars(
                select(TicketEvent.kind)
                .where(TicketEvent.ticket_id == row.id)
                .order_by(TicketEvent.id)
            )
        )
        return row, decision, kinds


def test_a_zmanda_brand_ticket_is_evaluated_under_zmanda_then_moves_with_its_brand(
    service: RunningService, systems: DemoSystems
) -> None:
    zendesk = systems.zendesk
    zendesk.add_user(REQUESTER, "end-user", time_zone="Pacific Time (US & Canada)")
    zendesk.add_user(AGENT_ID, "agent")
    zendesk.add_organization(ORGANIZATION, organization_fields={"support_plan": "standard"})
    zendesk.add_ticket(
        3001,
        requester_id=REQUESTER,
        organization_id=ORGANIZATION,
        priority="high",
        brand_id=ZMANDA_BRAND,
        custom_fields={ZD_ENVIRONMENT: "env_production"},
    )
    facts = Ticket(
        id="3001",
        created_at=MONDAY,
        priority="P2",
        plan="standard",
        environment="production",
        channel="web",
        customer_timezone="America/Los_Angeles",
        status="new",
    )
    service.zendesk_webhook(3001)
    service.settle()

    under_zmanda = Expected("zmanda", facts).at(MONDAY)
    assert zendesk_shown(systems, 3001) == zendesk_shows(under_zmanda)
    row, decision, kinds = stored(service, "3001")
    assert (row.policy, decision.policy, decision.routing_rule) == (
        "zmanda",
        "zmanda",
        "zmanda-brand",
    )
    assert row.routing is not None and row.routing["brand"] == str(ZMANDA_BRAND)
    assert "policy_changed" not in kinds

    # An agent moves the ticket to the Zoom brand an hour later: zoom applies, from creation.
    later = MONDAY + timedelta(hours=1)
    service.advance_to(later)
    systems.set_now(later)
    zendesk.agent_update(3001, AGENT_ID, at=later, brand_id=ZOOM_BRAND)
    service.zendesk_webhook(3001)
    service.settle()

    under_zoom = Expected("zoom", facts).at(later)
    assert under_zoom.targets["first_response"].due != under_zmanda.targets["first_response"].due
    assert zendesk_shown(systems, 3001) == zendesk_shows(under_zoom)
    row, decision, kinds = stored(service, "3001")
    assert (row.policy, decision.policy, decision.routing_rule) == ("zoom", "zoom", "zoom")
    assert kinds.count("policy_changed") == 1
    engine = service.service.runtime.engine
    with Session(engine) as session:
        move = session.scalars(
            select(TicketEvent).where(TicketEvent.kind == "policy_changed")
        ).one()
    assert move.payload == {"from": "zmanda", "to": "zoom", "rule": "zoom"}

    # The dashboard names the policy it is under now by its title, list and page alike.
    auth = {"Authorization": f"Bearer {DASHBOARD_TOKEN}"}
    page = service.get("/tickets/zendesk/3001", auth)
    assert page.status == 200
    assert "policy <b>Zoom support response times</b> (zoom)" in page.text
    board = service.get("/", auth)
    assert 'data-label="Policy" title="zoom">Zoom support response times</td>' in board.text
