"""Tickets for the dashboard tests: one per state, a holiday inside a clock, a pause."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import holidays

from slabot.service.runtime import Runtime
from slabot.store.snapshot import Snapshot, StatusChange

LA = ZoneInfo("America/Los_Angeles")


def thanksgiving(year: int) -> date:
    """From the holidays package, never hard-coded."""
    found = holidays.country_holidays("US", years=year, language="en_US")
    return next(day for day, name in found.items() if "Thanksgiving" in name)


HOLIDAY = thanksgiving(2026)
CREATED = datetime.combine(HOLIDAY - timedelta(days=1), datetime.min.time(), LA).replace(hour=15)
"""15:00 in Los Angeles the day before Thanksgiving."""
NOW = datetime.combine(HOLIDAY + timedelta(days=1), datetime.min.time(), LA).replace(hour=9)
"""09:00 the day after Thanksgiving."""


SUBJECT = "Phone calls drop after 30 seconds"


def snapshot(
    source: str, key: str, *, shown: dict[str, object] | None = None, **fields: object
) -> Snapshot:
    """A ticket of policy zoom; ``assignee``, ``queue`` and ``shown`` (any other keys, such as
    a subject) go where the connectors put them, in ``Snapshot.shown``."""
    values: dict[str, object] = {
        "source": source,
        "external_key": key,
        "policy": "zoom",
        "created_at": CREATED,
        "updated_at": CREATED,
        "priority": "P2",
        "plan": "premier",
        "environment": "production",
        "channel": "web",
        "customer_timezone": "America/Los_Angeles",
        "customer_country": "US",
    }
    values.update(fields)
    priority = values.get("priority")
    values["shown"] = {
        "priority": priority,
        "tags": [],
        "assignee_email": values.pop("assignee", None),
        "queue": values.pop("queue", None),
        **(shown or {}),
    }
    return Snapshot(**values)  # type: ignore[arg-type]


def load(runtime: Runtime) -> None:
    """Five open tickets across Zendesk and Jira, and a solved one. Groups: Tier 2 and Billing
    (Zendesk), the project OPS (Jira); zendesk:103 has none. Unassigned: 10002 and 103."""
    ingest = runtime.tickets.ingest
    # P2 premier: first response 4 business hours: 2h on Wednesday, Thanksgiving skipped,
    # due Friday 11:00; restoration 8 business hours.
    ingest(
        snapshot(
            "zendesk",
            "101",
            assignee="ana@example.com",
            queue="Tier 2",
            shown={
                "assignee_name": "Ana Agent",
                "subject": SUBJECT,
                "requester": "Roger Wilco",
                "organization": "Initech GmbH",
            },
        )
    )
    # P1 premier: first response within one hour, 24x7: long breached.
    ingest(snapshot("zendesk", "102", priority="P1", assignee="bo@example.com", queue="Billing"))
    # Waiting on the customer since Wednesday 16:00, with an earlier pause answered.
    ingest(
        snapshot(
            "jira",
            "10001",
            status="pending",
            assignee="ana@example.com",
            queue="OPS",
            first_response_at=CREATED + timedelta(minutes=20),
            status_history=(
                StatusChange(CREATED + timedelta(minutes=30), "pending", "h1"),
                StatusChange(CREATED + timedelta(minutes=45), "open", "h2"),
                StatusChange(CREATED + timedelta(hours=1), "pending", "h3"),
            ),
        )
    )
    # P3 standard plan: only a next update within a week.
    ingest(snapshot("jira", "10002", priority="P3", plan="standard", queue="OPS"))
    # Created just now: 75% of nothing yet.
    ingest(snapshot("zendesk", "103", created_at=NOW, updated_at=NOW, plan="standard"))
    ingest(snapshot("zendesk", "104", status="solved", solved_at=CREATED + timedelta(hours=1)))
