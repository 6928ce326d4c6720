"""Routing rules (bot.routing): every condition kind, first match wins, the final default,
the compiled predicates agreeing with the explanation, and bad ``routing:`` sections refused
with ``file:line: field.path:`` errors (check-config, evaluate --routing, routes explain)."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from bot.routing import ATTRIBUTES, Router, RoutingError, RoutingSpec
from bot.ticket import ROUTING_ATTRIBUTES, Ticket
from slabot.cli import main
from slabot.policy_files import PolicyFileError
from slabot.routing_files import load_routing
from slabot.service.config_check import check_service_config

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "config" / "slabot.yaml"
NOW = "2026-11-23T12:00:00Z"


def router(*rules: dict[str, Any], default: str = "fallback") -> Router:
    spec = RoutingSpec.model_validate(
        {"rules": [*rules, {"name": "default", "policy": default, "default": True}]}
    )
    return Router(spec)


def routed(rule_when: dict[str, Any], attributes: dict[str, Any]) -> bool:
    """Whether ``attributes`` match a rule with these conditions (else the default)."""
    found = router({"name": "r", "policy": "chosen", "when": rule_when}).route(attributes)
    return found.policy == "chosen"


@pytest.mark.parametrize(
    ("when", "matching", "other"),
    [
        ({"source": "jira"}, {"source": "jira"}, {"source": "zendesk"}),
        ({"brand": 360000000002}, {"brand": "360000000002"}, {"brand": "360000000001"}),
        ({"brand": ["1", "2"]}, {"brand": "2"}, {}),
        ({"group": "Tier 2"}, {"group": "Tier 2"}, {"group": "tier 2"}),
        ({"organization": "Acme"}, {"organization": "Acme"}, {"organization": "Globex"}),
        ({"form": 90}, {"form": "90"}, {"form": "91"}),
        ({"tags": ["vip", "gold"]}, {"tags": ["web", "gold"]}, {"tags": ["web"]}),
        (
            {"custom_field": {"id": 360001000001, "equals": "env_production"}},
            {"custom_fields": {"360001000001": "env_production"}},
            {"custom_fields": {"360001000001": "env_staging"}},
        ),
        (
            {"custom_field": {"id": 7, "present": True}},
            {"custom_fields": {"7": "x"}},
            {"custom_fields": {"7": None}},
        ),
        (
            {"custom_field": {"id": 7, "present": False}},
            {"custom_fields": {}},
            {"custom_fields": {"7": "x"}},
        ),
        (
            {"organization_field": {"key": "support_plan", "equals": ["premier", "elite"]}},
            {"organization_fields": {"support_plan": "elite"}},
            {"organization_fields": {"support_plan": "standard"}},
        ),
        ({"project": ["CT", "VOIP"]}, {"project": "VOIP"}, {"project": "SUP"}),
        ({"issue_type": "Bug"}, {"issue_type": "Bug"}, {"issue_type": "Incident"}),
        ({"components": ["Dialer"]}, {"components": ["CRM", "Dialer"]}, {"components": []}),
        ({"labels": ["security"]}, {"labels": ["security"]}, {"labels": ["secure"]}),
        (
            {"field": {"id": "customfield_10050", "equals": "Premier"}},
            {"fields": {"customfield_10050": "Premier"}},
            {"fields": {"customfield_10050": "Standard"}},
        ),
        (  # a multi-select matches on any option; a number field as text
            {"field": {"id": "customfield_1", "equals": ["B", "3"]}},
            {"fields": {"customfield_1": ["A", "B"]}},
            {"fields": {"customfield_1": 4}},
        ),
        (
            {"field": {"id": "customfield_1", "equals": "3"}},
            {"fields": {"customfield_1": 3}},
            {"fields": {}},
        ),
        (
            {"all": [{"source": "jira"}, {"labels": ["a"]}]},
            {"source": "jira", "labels": ["a"]},
            {"source": "jira", "labels": ["b"]},
        ),
        (
            {"any": [{"brand": "2"}, {"tags": ["product_zmanda"]}]},
            {"brand": "1", "tags": ["product_zmanda"]},
            {"brand": "1", "tags": ["other"]},
        ),
        (  # several keys in one mapping: all must hold
            {"source": "zendesk", "group": "Tier 2"},
            {"source": "zendesk", "group": "Tier 2"},
            {"source": "jira", "group": "Tier 2"},
        ),
    ],
)
def test_each_condition_kind_matches_its_value_and_not_another(
    when: dict[str, Any], matching: dict[str, Any], other: dict[str, Any]
) -> None:
    assert routed(when, matching)
    assert not routed(when, other)
    absent_matches = when.get("custom_field", {}).get("present") is False
    assert routed(when, {}) is absent_matches  # a ticket without the attribute


def test_a_value_of_the_wrong_shape_does_not_match_rather_than_fail() -> None:
    assert not routed({"brand": "1"}, {"brand": ["1"]})
    assert not routed({"field": {"id": "x", "equals": "1"}}, {"fields": {"x": {"value": "1"}}})
    # A source that is not text: only the rules for any source apply.
    table = router(
        {"name": "jira", "policy": "a", "when": {"source": "jira"}},
        {"name": "tagged", "policy": "b", "when": {"tags": ["x"]}},
    )
    assert table.route({"source": ["jira"], "tags": ["x"]}).rule == "tagged"
    assert table.route({"source": {"a": 1}}).rule == "default"


def test_the_first_matching_rule_wins_and_the_default_takes_the_rest() -> None:
    table = router(
        {"name": "jira-ct", "policy": "cloudtalk", "when": {"source": "jira", "project": "CT"}},
        {"name": "any-jira", "policy": "zmanda", "when": {"source": "jira"}},
        {"name": "vip", "policy": "cloudtalk", "when": {"tags": ["vip"]}},
        default="zoom",
    )
    assert table.route({"source": "jira", "project": "CT", "tags": ["vip"]}).rule == "jira-ct"
    assert table.route({"source": "jira", "project": "SUP"}).rule == "any-jira"
    # A rule without a source applies to every source, in its place in the order.
    assert table.route({"source": "zendesk", "tags": ["vip"]}).rule == "vip"
    assert table.route({"tags": ["vip"]}).rule == "vip"
    fallback = table.route({"source": "zendesk", "tags": ["web"]})
    assert (fallback.policy, fallback.rule, fallback.index) == ("zoom", "default", 3)


def test_unnamed_rules_are_called_by_their_position() -> None:
    table = router({"policy": "a", "when": {"source": "jira"}})
    assert table.route({"source": "jira"}).rule == "rule 1"


def test_the_compiled_rules_agree_with_their_explanation_on_random_tickets() -> None:
    table = router(
        {"name": "one", "policy": "a", "when": {"source": "zendesk", "brand": ["1", "2"]}},
        {"name": "two", "policy": "b", "when": {"any": [{"tags": ["x"]}, {"group": "G"}]}},
        {
            "name": "three",
            "policy": "c",
            "when": {"all": [{"source": "jira"}, {"labels": ["y"], "project": "P"}]},
        },
        {"name": "four", "policy": "a", "when": {"field": {"id": "f", "equals": "v"}}},
        {"name": "five", "policy": "b", "when": {"custom_field": {"id": 5, "present": True}}},
    )
    rng = random.Random(17)
    seen = set()
    for _ in range(3000):
        attributes: dict[str, Any] = {"source": rng.choice(["zendesk", "jira", None])}
        if rng.random() < 0.5:
            attributes["brand"] = rng.choice(["1", "2", "3"])
        attributes["tags"] = rng.sample(["x", "z"], rng.randrange(3))
        attributes["labels"] = rng.sample(["y", "w"], rng.randrange(3))
        attributes["group"] = rng.choice(["G", "H", None])
        attributes["project"] = rng.choice(["P", "Q"])
        attributes["fields"] = {"f": rng.choice(["v", "u", None])}
        attributes["custom_fields"] = {"5": rng.choice(["on", "", None])}
        verdicts = table.explain(attributes)
        assert verdicts[-1].matched
        assert all(not verdict.matched for verdict in verdicts[:-1])
        assert table.route(attributes).rule == verdicts[-1].rule
        assert table.route_checked(attributes).rule == verdicts[-1].rule
        attributes["tags"] = "x" if attributes["tags"] == ["x"] else attributes["tags"]
        assert table.route(attributes) == table.route_checked(attributes)  # a tag as text
        seen.add(verdicts[-1].rule)
    assert seen == {"one", "two", "three", "four", "five", "default"}


def test_explain_says_why_each_earlier_rule_did_not_match() -> None:
    table = router(
        {"name": "jira", "policy": "cloudtalk", "when": {"source": "jira"}},
        {"name": "zmanda", "policy": "zmanda", "when": {"brand": "2", "tags": ["product_zmanda"]}},
        default="zoom",
    )
    verdicts = table.explain({"source": "zendesk", "brand": "2", "tags": ["web"]})
    assert [(v.rule, v.matched) for v in verdicts] == [
        ("jira", False),
        ("zmanda", False),
        ("default", True),
    ]
    assert verdicts[0].reasons == ("source is 'zendesk', not 'jira'",)
    assert verdicts[1].reasons == ("brand is '2'", "tags include none of product_zmanda (has web)")


def test_the_ticket_accepts_the_routing_fields_and_the_router_reads_the_same_ones() -> None:
    assert ATTRIBUTES == ROUTING_ATTRIBUTES
    ticket = Ticket.from_mapping(
        {"id": "1", "created_at": NOW, "source": "jira", "labels": ["a"], "fields": {"x": 1}}
    )
    assert ticket.id == "1"


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ([{"policy": "zoom", "when": {"source": "jira"}}], "the last rule must be the default"),
        (
            [{"policy": "zoom", "default": True}, {"policy": "zoom", "default": True}],
            "only the last rule may be the default",
        ),
        ([{"policy": "zoom"}], "when: required"),
        ([{"policy": "zoom", "default": True, "when": {"source": "jira"}}], "has no conditions"),
        ([{"policy": "z", "when": {}}, {"policy": "z", "default": True}], "an empty condition"),
        ([{"policy": "z", "when": {"tags": []}}, {"policy": "z", "default": True}], "at least 1"),
        (
            [
                {"policy": "z", "when": {"field": {"id": "x"}}},
                {"policy": "z", "default": True},
            ],
            "give either equals:",
        ),
        (
            [
                {"name": "a", "policy": "z", "when": {"source": "jira"}},
                {"name": "a", "policy": "z", "default": True},
            ],
            "is the name of rule 1 too",
        ),
    ],
)
def test_invalid_rule_tables_are_refused(rules: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RoutingSpec.model_validate({"rules": rules})


def test_a_router_refuses_a_policy_that_is_not_loaded() -> None:
    spec = RoutingSpec.model_validate({"rules": [{"policy": "zoom", "default": True}]})
    with pytest.raises(RoutingError, match="names policy 'zoom', which is not loaded"):
        Router(spec, ["cloudtalk"])


# The routing: section of a config file, as check-config, evaluate and routes explain read it.

GOOD = """\
routing:
  rules:
    - name: cloudtalk-on-jira
      policy: cloudtalk
      when: {source: jira, project: CT}
    - name: zmanda
      policy: zmanda
      when: {source: zendesk, brand: "2"}
    - {name: zoom, policy: zoom, default: true}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "slabot.yaml"
    path.write_text(text, encoding="utf-8")
    return path


PROBLEM = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): (?P<field>[\w.-]+): (?P<msg>\S.*)$")


def located(text: str, tmp_path: Path) -> list[tuple[int, str, str]]:
    """check-config's problems for ``text`` as (line, field, message), each well formed."""
    path = write(tmp_path, text)
    problems = check_service_config(path)
    parsed = []
    for problem in problems:
        found = PROBLEM.match(str(problem))
        assert found, str(problem)
        assert found["file"] == str(path)
        parsed.append((int(found["line"]), found["field"], found["msg"]))
    return parsed


def test_the_shipped_config_routes_the_three_seed_policies() -> None:
    assert check_service_config(SHIPPED) == []
    routing = load_routing(SHIPPED)
    assert set(routing.router.policies) == {"cloudtalk", "zmanda", "zoom"}
    route = routing.router.route
    assert route({"source": "jira", "project": "CT"}).policy == "cloudtalk"
    assert route({"source": "jira", "project": "SUP"}).policy == "zoom"
    assert route({"source": "zendesk", "brand": "360000000002"}).policy == "zmanda"
    assert route({"source": "zendesk", "tags": ["product_zmanda"]}).policy == "zmanda"
    assert route({"source": "zendesk", "brand": "360000000001"}).policy == "zoom"


def test_an_unknown_policy_is_located_at_its_rule(tmp_path: Path) -> None:
    text = GOOD.replace("policy: zmanda", "policy: zmandaa")
    assert located(text, tmp_path) == [
        (
            7,
            "routing.rules.1.policy",
            "rule 'zmanda' names policy 'zmandaa', which is not loaded (cloudtalk, zmanda, "
            "zoom); add its file to service.policies or name a policy loaded",
        )
    ]


def test_a_missing_default_is_located_at_the_last_rule(tmp_path: Path) -> None:
    text = GOOD.replace("    - {name: zoom, policy: zoom, default: true}\n", "")
    [(line, field, message)] = located(text, tmp_path)
    assert (line, field) == (6, "routing.rules.1")
    assert message.startswith("the last rule must be the default: add a final rule")


def test_an_unknown_condition_is_located_with_a_suggestion(tmp_path: Path) -> None:
    text = GOOD.replace("brand:", "brnad:")
    [(line, field, message)] = located(text, tmp_path)
    assert (line, field) == (8, "routing.rules.1.when.brnad")
    assert message.startswith("unknown key 'brnad' (did you mean 'brand'?); expected one of")


def test_an_unknown_field_of_a_field_condition_is_located(tmp_path: Path) -> None:
    text = GOOD.replace('brand: "2"}', "custom_field: {id: 5, equal: x}}")  # 'equal' for 'equals'
    problems = located(text, tmp_path)
    assert (8, "routing.rules.1.when.custom_field.equal") in [(p[0], p[1]) for p in problems]


def test_a_helpdesk_without_policy_needs_routing(tmp_path: Path) -> None:
    text = "zendesk:\n  priorities: {P1: urgent}\n"
    [(line, field, message)] = located(text, tmp_path)
    assert (line, field) == (1, "zendesk.policy")
    assert "add a routing: section" in message
    assert located(GOOD + text, tmp_path) == []


def test_check_config_prints_the_routing_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, GOOD.replace("policy: zmanda", "policy: nope"))
    assert main(["check-config", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}:7: routing.rules.1.policy: rule 'zmanda' names policy 'nope'" in err


def test_load_routing_raises_the_same_located_problems(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("project: CT", "projet: CT"))
    with pytest.raises(PolicyFileError) as raised:
        load_routing(path)
    assert str(raised.value.problems[0]).startswith(f"{path}:5: routing.rules.0.when.projet:")
    with pytest.raises(PolicyFileError, match="no routing: section"):
        load_routing(write(tmp_path, "zendesk: {policy: zoom}\n"))


def test_evaluate_routes_each_line_to_its_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write(tmp_path, GOOD)
    lines = [
        {"id": "CT-1", "created_at": "2026-11-23T09:00:00Z", "source": "jira", "project": "CT",
         "plan": "advanced", "priority": "P3"},
        {"id": "ZM-1", "created_at": "2026-11-23T09:00:00Z", "source": "zendesk", "brand": "2",
         "plan": "standard", "priority": "P3"},
        {"id": "ZO-1", "created_at": "2026-11-23T09:00:00Z", "source": "zendesk", "brand": "1",
         "plan": "standard", "priority": "P3", "tags": ["web"]},
    ]  # fmt: skip
    source = tmp_path / "tickets.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    assert main(["evaluate", "--routing", str(config), "--now", NOW, str(source)]) == 0
    routed_out = capsys.readouterr().out.splitlines()
    # Each decision is the one its policy gives when the line names it.
    for line, decision in zip(lines, routed_out, strict=True):
        policy = {"CT": "cloudtalk", "ZM": "zmanda", "ZO": "zoom"}[line["id"][:2]]
        named = tmp_path / "one.jsonl"
        named.write_text(json.dumps({**line, "policy": policy}) + "\n", encoding="utf-8")
        files = [f"--policy={ROOT / 'config' / 'policies' / f'{p}.yaml'}" for p in [policy]]
        assert main(["evaluate", *files, "--now", NOW, str(named)]) == 0
        assert capsys.readouterr().out.strip() == decision
    # Without routing, the three policies' plans differ: the decisions do too.
    assert len({json.loads(d)["commitment"] for d in routed_out} | {"x"}) >= 2


def test_evaluate_with_routing_refuses_a_line_naming_its_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write(tmp_path, GOOD)
    source = tmp_path / "tickets.jsonl"
    source.write_text('{"id": "1", "created_at": "2026-11-23T09:00:00Z", "policy": "zoom"}\n')
    assert main(["evaluate", "--routing", str(config), "--now", NOW, str(source)]) == 1
    assert "field 'policy' is not used with --routing" in capsys.readouterr().err
    assert main(["evaluate", "--routing", str(config), "--policy", "x.yaml", str(source)]) == 1
    assert "not both" in capsys.readouterr().err


def test_routes_explain_names_the_rule_and_why_the_earlier_ones_did_not_match(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write(tmp_path, GOOD)
    ticket = (
        '{"id": "ZD-9", "created_at": "2026-11-23T09:00:00Z", "source": "zendesk", "brand": "1"}'
    )
    assert main(["routes", "explain", "--config", str(config), ticket]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [
        f"Routing ZD-9 by {config}:",
        "  1. 'cloudtalk-on-jira' (policy cloudtalk): does not match",
        "       source is 'zendesk', not 'jira'",
        "  2. 'zmanda' (policy zmanda): does not match",
        "       source is 'zendesk'",
        "       brand is '1', not '2'",
        "  3. 'zoom' (policy zoom): matches",
        "       the default: every ticket no earlier rule matched",
        "=> policy zoom (Zoom support response times), by rule 'zoom'",
    ]


def test_a_backfill_routes_by_the_config_files_rules(tmp_path: Path) -> None:
    import argparse

    from connectors.cli import BackfillError, backfill_router

    policies = load_routing(SHIPPED).policies
    with_rules = argparse.Namespace(config=write(tmp_path, GOOD))
    found = backfill_router(with_rules, policies)
    assert found is not None
    assert found.route({"source": "jira", "project": "CT"}).policy == "cloudtalk"
    plain = tmp_path / "plain.yaml"
    plain.write_text("zendesk: {policy: zoom}\n", encoding="utf-8")
    assert backfill_router(argparse.Namespace(config=plain), policies) is None
    bad = argparse.Namespace(config=write(tmp_path, GOOD.replace("policy: zmanda", "policy: x")))
    with pytest.raises(BackfillError, match=r"routing.rules.1.policy: rule 'zmanda' names"):
        backfill_router(bad, policies)
