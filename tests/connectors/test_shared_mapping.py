"""connectors.mapping: the pure helpers every helpdesk's mapping reads payloads with."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from connectors.mapping import (
    PayloadError,
    customer_country,
    customer_zone,
    first_value,
    json_object,
    parse_instant,
    sources_in_order,
    string_set,
    text,
)


@dataclass(frozen=True)
class Source:
    key: str
    values: dict[str, str] = field(default_factory=dict)


def test_an_instant_with_any_offset_is_read_in_utc_and_drift_is_named() -> None:
    expected = datetime(2026, 11, 16, 17, 45, tzinfo=UTC)
    assert parse_instant("2026-11-16T17:45:00.000+0000", "created") == expected
    assert parse_instant("2026-11-16T18:45:00+01:00", "created") == expected
    assert parse_instant(None, "updated") is None
    with pytest.raises(PayloadError, match=r"^Ticket 7: created is missing$"):
        parse_instant("", "Ticket 7: created", required=True)
    with pytest.raises(PayloadError, match="has no time zone"):
        parse_instant("2026-11-16T17:45:00", "created")


def test_a_field_value_is_trimmed_text_and_a_list_gives_its_first_item() -> None:
    assert [text(" gold "), text(["x", "y"]), text([]), text(False), text("  ")] == [
        "gold",
        "x",
        None,
        None,
        None,
    ]


def test_the_first_source_that_gives_a_value_wins_renamed_by_its_values() -> None:
    raw = {"plan": "  ", "tier": "prem"}
    sources = sources_in_order([Source("plan"), Source("tier", {"prem": "premier"})])
    assert first_value(sources, lambda source: raw.get(source.key)) == "premier"
    assert sources_in_order(Source("plan")) == [Source("plan")]
    assert sources_in_order(None) == []


def test_an_unusable_zone_or_country_is_dropped_with_a_warning() -> None:
    warnings: list[str] = []
    assert customer_zone("Europe/Paris", "Ticket 7", warnings) == "Europe/Paris"
    assert customer_zone("Paris", "Ticket 7", warnings) is None
    assert customer_zone("Paris", "Ticket 7", warnings, {"Paris": "Europe/Paris"}.get)
    assert customer_country(" fr ", "Ticket 7", warnings) == "FR"
    assert customer_country("France", "Ticket 7", warnings) is None
    assert warnings == [
        "Ticket 7: unknown time zone 'Paris'; the policy's default applies",
        "Ticket 7: customer country 'France' is not a two-letter ISO code; the policy's "
        "default applies",
    ]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{", "the body is not JSON"),
        (b"[" * 100_000, "nested too deeply"),
        (b"[1]", "the body must be a JSON object"),
    ],
)
def test_a_webhook_body_must_be_a_json_object(body: bytes, problem: str) -> None:
    with pytest.raises(PayloadError, match=problem):
        json_object(body)


def test_tags_must_be_a_list_of_strings() -> None:
    assert string_set(None, "Ticket 7: tags") == set()
    with pytest.raises(PayloadError, match=r"^Ticket 7: tags must be a list of strings$"):
        string_set(["vip", 3], "Ticket 7: tags")
