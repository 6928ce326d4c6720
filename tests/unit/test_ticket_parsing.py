"""Ticket.from_mapping: the JSON ticket shape, and errors that name the offending field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from bot.errors import TicketError
from bot.ticket import Ticket

MINIMAL = {"id": "T-1", "created_at": "2026-06-09T10:00:00+02:00"}


def parse(**fields):
    return Ticket.from_mapping({**MINIMAL, **fields})


def refused(data) -> str:
    with pytest.raises(TicketError) as error:
        Ticket.from_mapping(data)
    return str(error.value)


def test_a_minimal_ticket_needs_only_an_id_and_a_creation_time() -> None:
    ticket = Ticket.from_mapping(MINIMAL)
    assert ticket.id == "T-1"
    assert ticket.created_at == datetime(2026, 6, 9, 8, tzinfo=UTC)
    assert ticket.status == "open"
    assert ticket.priority is None
    assert ticket.paused == ()


def test_timestamps_keep_their_offset_and_accept_z() -> None:
    ticket = parse(first_response_at="2026-06-09T09:00:00Z")
    assert ticket.created_at.utcoffset() == timedelta(hours=2)
    assert ticket.first_response_at == datetime(2026, 6, 9, 9, tzinfo=UTC)


def test_every_field_of_the_json_shape_is_read() -> None:
    ticket = parse(
        priority="P1",
        plan="premier",
        environment="production",
        product_stage="ga",
        urgency="high",
        impact="low",
        channel="phone",
        customer_timezone="Europe/Bratislava",
        customer_country="SK",
        status="solved",
        first_response_at="2026-06-09T10:05:00+02:00",
        last_agent_update_at="2026-06-09T11:00:00+02:00",
        solved_at="2026-06-09T12:00:00+02:00",
        restoration_started_at="2026-06-09T10:00:00+02:00",
        paused=[["2026-06-09T10:10:00+02:00", "2026-06-09T10:20:00+02:00"]],
    )
    assert (ticket.priority, ticket.plan, ticket.environment) == ("P1", "premier", "production")
    assert (ticket.urgency, ticket.impact, ticket.channel) == ("high", "low", "phone")
    assert (ticket.customer_timezone, ticket.customer_country) == ("Europe/Bratislava", "SK")
    assert ticket.status == "solved"
    assert ticket.solved_at == datetime(2026, 6, 9, 10, tzinfo=UTC)
    assert ticket.paused == (
        (datetime(2026, 6, 9, 8, 10, tzinfo=UTC), datetime(2026, 6, 9, 8, 20, tzinfo=UTC)),
    )


def test_text_fields_are_trimmed_and_blank_means_absent() -> None:
    ticket = parse(priority="  P2 ", environment="   ", plan="")
    assert ticket.priority == "P2"
    assert ticket.environment is None
    assert ticket.plan is None


def test_a_null_status_means_open() -> None:
    assert parse(status=None).status == "open"


def test_an_open_ended_pause_is_kept() -> None:
    ticket = parse(paused=[["2026-06-09T10:10:00+02:00", None]])
    assert ticket.paused == (
        (datetime(2026, 6, 9, 10, 10, tzinfo=timezone(timedelta(hours=2))), None),
    )


# Required fields.


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"created_at": MINIMAL["created_at"]}, id="missing"),
        pytest.param({**MINIMAL, "id": ""}, id="empty"),
        pytest.param({**MINIMAL, "id": 42}, id="number"),
        pytest.param({**MINIMAL, "id": None}, id="null"),
    ],
)
def test_an_id_is_required(data) -> None:
    assert "'id'" in refused(data)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"id": "T-1"}, id="missing"),
        pytest.param({"id": "T-1", "created_at": None}, id="null"),
    ],
)
def test_a_creation_time_is_required(data) -> None:
    assert "'created_at'" in refused(data)


def test_a_ticket_must_be_an_object() -> None:
    assert "JSON object" in refused([MINIMAL])


# Timestamps.

TIME_FIELDS = (
    "created_at",
    "first_response_at",
    "last_agent_update_at",
    "solved_at",
    "restoration_started_at",
)


@pytest.mark.parametrize("field", TIME_FIELDS)
@pytest.mark.parametrize(
    "value",
    [
        pytest.param("yesterday", id="words"),
        pytest.param("2026-13-01T10:00:00Z", id="month-13"),
        pytest.param("09/06/2026 10:00", id="local-format"),
    ],
)
def test_a_malformed_timestamp_is_refused_naming_the_field(field, value) -> None:
    message = refused({**MINIMAL, field: value})
    assert repr(field) in message
    assert "ISO 8601" in message


@pytest.mark.parametrize("field", TIME_FIELDS)
def test_a_timestamp_without_an_offset_is_refused_naming_the_field(field) -> None:
    message = refused({**MINIMAL, field: "2026-06-09T10:00:00"})
    assert repr(field) in message
    assert "offset" in message


@pytest.mark.parametrize("field", TIME_FIELDS)
def test_a_timestamp_that_is_not_a_string_is_refused_naming_the_field(field) -> None:
    assert repr(field) in refused({**MINIMAL, field: 1781000000})


# Other fields.


def test_an_unknown_field_is_refused_by_name() -> None:
    message = refused({**MINIMAL, "priorty": "P1"})
    assert "priorty" in message
    assert "priority" in message  # the list of known fields shows the right spelling


@pytest.mark.parametrize("status", ["waiting", "Open", "hold", 3])
def test_an_unknown_status_is_refused_with_the_choices(status) -> None:
    message = refused({**MINIMAL, "status": status})
    assert "'status'" in message
    assert "pending" in message and "on_hold" in message


@pytest.mark.parametrize("field", ["priority", "plan", "environment", "customer_country"])
def test_a_text_field_that_is_not_a_string_is_refused_by_name(field) -> None:
    assert repr(field) in refused({**MINIMAL, field: 1})


# Pauses: a list of [from, to-or-null] pairs.


@pytest.mark.parametrize(
    ("paused", "names"),
    [
        pytest.param("2026-06-09T10:00:00Z", "'paused'", id="not-a-list"),
        pytest.param([["2026-06-09T10:00:00Z"]], "'paused'[0]", id="one-element"),
        pytest.param([["2026-06-09T10:00:00Z", None, None]], "'paused'[0]", id="three-elements"),
        pytest.param([[None, None]], "'paused'[0]", id="null-start"),
        pytest.param(["2026-06-09T10:00:00Z"], "'paused'[0]", id="not-a-pair"),
        pytest.param([["soon", None]], "paused[0][0]", id="bad-start"),
        pytest.param([["2026-06-09T10:00:00", None]], "paused[0][0]", id="naive-start"),
        pytest.param(
            [["2026-06-09T10:00:00Z", "2026-06-09T11:00:00"]], "paused[0][1]", id="naive-end"
        ),
        pytest.param([["2026-06-09T10:00:00Z", 5]], "'paused'[0][1]", id="number-end"),
        pytest.param(
            [["2026-06-09T10:00:00Z", "2026-06-09T09:00:00Z"]], "'paused'[0]", id="ends-first"
        ),
        pytest.param(
            [["2026-06-09T10:00:00Z", None], ["later", None]], "paused[1][0]", id="second-pair"
        ),
    ],
)
def test_bad_pauses_are_refused_naming_the_pair(paused, names) -> None:
    assert names in refused({**MINIMAL, "paused": paused})
