"""Real Jira Cloud webhook bodies (tests/fixtures/real/jira, see SOURCES.md) into the mapping.

Every body is read by ``parse_webhook`` as Jira sent it, and every issue it carries whole goes
through ``map_issue`` (a webhook's ``issue`` is what ``GET /rest/api/2/issue`` answers). The
custom fields of a real issue have Jira's real shapes: a select list is an option object, a
multi-select a list of them, a number a JSON number; slabot's field sources read each.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from connectors.jira.config import parse_jira_config
from connectors.jira.mapping import IssueBundle, map_issue, parse_webhook

REAL = Path(__file__).resolve().parents[2] / "fixtures" / "real" / "jira"
BODIES = sorted(REAL.glob("*.json"))


def body(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((REAL / name).read_bytes())
    return loaded


@pytest.mark.parametrize("path", BODIES, ids=[p.name for p in BODIES])
def test_every_real_body_is_read_as_jira_sent_it(path: Path) -> None:
    raw = path.read_bytes()
    data = json.loads(raw)
    notice = parse_webhook(raw)
    assert notice.event == data["webhookEvent"]
    assert notice.issue_id == data["issue"]["id"]
    assert notice.issue_key == data["issue"]["key"]
    author = data.get("user") or data["comment"]["author"]
    assert notice.account_id == author["accountId"]


@pytest.mark.parametrize(
    "path",
    [p for p in BODIES if "created" in json.loads(p.read_bytes())["issue"]["fields"]],
    ids=lambda p: p.name,
)
def test_every_whole_real_issue_maps_without_a_warning(path: Path) -> None:
    issue = json.loads(path.read_bytes())["issue"]
    config = parse_jira_config({"jira": {"policy": "zoom", "projects": ["TES", "KT", "IDT"]}})
    mapped = map_issue(IssueBundle(issue), config)
    assert mapped.snapshot.external_key == issue["id"]
    assert mapped.snapshot.shown["key"] == issue["key"]
    assert mapped.snapshot.shown["tags"] == sorted(issue["fields"]["labels"])
    assert mapped.warnings == ()


def test_real_custom_field_shapes_are_read_by_the_field_sources() -> None:
    issue = body("webhook-cloud-issue-created-many-fields.json")["issue"]
    fields = issue["fields"]
    # As Jira sent them: a single select, a multi-select, a number.
    assert fields["customfield_10074"]["value"] == "A"
    assert [o["value"] for o in fields["customfield_10075"]] == ["1", "2"]
    assert fields["customfield_10072"] == 23
    config = parse_jira_config(
        {
            "jira": {
                "policy": "zoom",
                "projects": ["KT"],
                "fields": {
                    "plan": {
                        "from": "field",
                        "id": "customfield_10074",
                        "values": {"A": "advanced"},
                    },
                    "environment": {
                        "from": "field",
                        "id": "customfield_10075",
                        "values": {"1": "production"},
                    },
                    "product_stage": {"from": "field", "id": "customfield_10072"},
                    "customer_timezone": {"from": "reporter_time_zone"},
                },
            }
        }
    )
    snapshot = map_issue(IssueBundle(issue), config).snapshot
    assert snapshot.plan == "advanced"
    assert snapshot.environment == "production"  # the first option of the multi-select
    assert snapshot.product_stage == "23"
    assert snapshot.customer_timezone == fields["reporter"]["timeZone"] == "America/Vancouver"
