"""Malformed policy files: every problem names the file, the line, the field and what to write.

Each file in ``tests/fixtures/policies/bad/`` is ``valid.yaml`` with one mistake, described
on its first line. The table below lists every problem the loader must report for it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.policy import PolicySpec
from slabot.policy_files import (
    PolicyFileError,
    Problem,
    bundled_policy_paths,
    load_policy,
    load_policy_spec,
    parse_policy,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "policies"
VALID = FIXTURES / "valid.yaml"
BAD = FIXTURES / "bad"

Expected = tuple[int, str, str]
"""(line, field path, a phrase the message must contain)."""

ENTERPRISE_MERGE = "(merged into plans.enterprise by '<<:' at line 37)"

CASES: dict[str, list[Expected]] = {
    "yaml_syntax.yaml": [
        (24, "", "expected ',' or ']'"),
    ],
    "yaml_bad_indentation.yaml": [
        (8, "", "mapping values are not allowed here; quote a value that holds ': ', or check"),
    ],
    "not_a_mapping.yaml": [
        (2, "", "the file is a list; a policy file is a YAML mapping of keys"),
    ],
    "unknown_top_level_key.yaml": [
        (12, "owner", "unknown key 'owner'; expected one of name, title, source, priorities"),
    ],
    "unknown_nested_key.yaml": [
        (
            32,
            "plans.enterprise.targets.P1.first_respons",
            "unknown key 'first_respons' (did you mean 'first_response'?); expected one of "
            "first_response, restoration, next_update, next_reply, agent_work, requester_wait "
            + ENTERPRISE_MERGE,
        ),
        (
            32,
            "plans.professional.targets.P1.first_respons",
            "did you mean 'first_response'?",
        ),
    ],
    "missing_plans.yaml": [
        (2, "plans", "required and missing: add 'plans:' at the top level"),
    ],
    "bad_duration.yaml": [
        (34, "plans.enterprise.targets.P2.first_response", "'3x' is not a duration"),
        (
            34,
            "plans.professional.targets.P2.first_response",
            "'3x' is not a duration: write hours, minutes and seconds such as '15m', '3h'",
        ),
    ],
    "zero_duration.yaml": [
        (34, "plans.enterprise.targets.P2.first_response", "must be longer than zero"),
        (
            34,
            "plans.professional.targets.P2.first_response",
            "'0m': a target must be longer than zero (use 'none' for no target)",
        ),
    ],
    "target_without_unit.yaml": [
        (34, "plans.enterprise.targets.P2.first_response", "240 is not a target"),
        (
            34,
            "plans.professional.targets.P2.first_response",
            "240 is not a target: write a duration with its unit ('90m', '3h')",
        ),
    ],
    "bad_commitment.yaml": [
        (28, "plans.enterprise.commitment", "expected 'sla' or 'slo' " + ENTERPRISE_MERGE),
        (
            28,
            "plans.professional.commitment",
            "'gold' is not allowed here; expected 'sla' or 'slo'",
        ),
    ],
    "unknown_default_priority.yaml": [
        (11, "default_priority", "'P4' is not a priority of this policy ['P1', 'P2', 'P3']"),
    ],
    "unknown_matrix_priority.yaml": [
        (
            16,
            "classification.matrix.table.low.low",
            "'P5' is not a priority of this policy ['P1', 'P2', 'P3']",
        ),
    ],
    "target_for_unknown_priority.yaml": [
        (35, "plans.professional.targets.P4", "'P4' is not a priority of this policy"),
    ],
    "duplicate_priority.yaml": [
        (9, "priorities.2.name", "'P1' is given twice; each priority needs its own name"),
    ],
    "undefined_calendar.yaml": [
        (
            33,
            "plans.professional.targets.P1.restoration",
            "calendar 'office' is not defined (known: ['business', '24x7'])",
        ),
    ],
    "missing_target_calendar.yaml": [
        (
            31,
            "plans.professional.targets.P1.first_response",
            "no calendar; set one on the target or the plan's calendar",
        ),
    ],
    "alias_to_missing_plan.yaml": [
        (
            40,
            "plan_aliases.trial",
            "'premium' is not a plan of this policy ['professional', 'enterprise']",
        ),
    ],
    "bad_timezone.yaml": [
        (
            21,
            "calendars.business.timezone",
            "'Europe/Bratislav' is not an IANA time zone (such as 'Europe/Bratislava'",
        ),
    ],
    "timezone_from_unknown_field.yaml": [
        (
            21,
            "calendars.business.timezone.from_field",
            "the time zone can come from customer_timezone, not 'customer_tz'",
        ),
    ],
    "bad_holiday_country.yaml": [
        (
            25,
            "calendars.business.holidays.country",
            "'XX' is not a country code the holidays package knows (ISO 3166-1 alpha-2",
        ),
    ],
    "country_read_as_boolean.yaml": [
        (
            25,
            "calendars.business.holidays.country",
            "got False; expected text or a mapping with keys from_field, default (YAML reads "
            "yes, no, on, off, true and false as booleans: quote the value",
        ),
    ],
    "bad_subdivision.yaml": [
        (26, "calendars.business.holidays.subdivision", "'XYZ' is not a subdivision of SK"),
    ],
    "overlapping_intervals.yaml": [
        (
            23,
            "calendars.business.hours.weekdays",
            "opening intervals '09:00-13:00' and '12:00-17:00' overlap; give each open period once",
        ),
    ],
    "interval_closes_before_open.yaml": [
        (
            23,
            "calendars.business.hours.weekdays.1",
            "'17:00-13:00' closes before it opens; split a night shift",
        ),
    ],
    "hours_not_a_list.yaml": [
        (23, "calendars.business.hours.weekdays", "got '09:00-17:00'; expected a list"),
    ],
    "bad_weekday.yaml": [
        (
            23,
            "calendars.business.hours.munday",
            "not a day of the week; use monday ... sunday, or weekdays for Monday to Friday",
        ),
    ],
    "calendar_without_hours.yaml": [
        (
            20,
            "calendars.business",
            "a calendar needs opening hours (for example hours: {weekdays: ['09:00-17:00']}) "
            "or always_open: true",
        ),
    ],
    "impossible_date.yaml": [
        (
            26,
            "",
            "'2026-13-01' is not a valid date; write an existing date as YYYY-MM-DD",
        ),
    ],
    "cap_without_cap.yaml": [
        (
            18,
            "classification.product_stage.effect",
            "'cap' needs the priority to cap at; add one such as cap: P4",
        ),
    ],
    "merged_plan_mistake.yaml": [
        # The merged plan's own key, on its own line; the anchored plan is fine.
        (38, "plans.enterprise.commitment", "'gold' is not allowed here; expected 'sla' or 'slo'"),
    ],
    "merged_plan_inherited_mistake.yaml": [
        (
            33,
            "plans.enterprise.targets.P1.restauration",
            "unknown key 'restauration' (did you mean 'restoration'?); expected one of "
            "first_response, restoration, next_update, next_reply, agent_work, requester_wait "
            + ENTERPRISE_MERGE,
        ),
        (33, "plans.professional.targets.P1.restauration", "unknown key 'restauration'"),
    ],
    "duplicate_key.yaml": [
        (
            35,
            "plans.professional.targets.P2",
            "given twice (first at line 34); only the last would count: keep one",
        ),
    ],
    "bad_policy_name.yaml": [
        (2, "name", "'Acme Corp' is not allowed here; expected lower-case letters, digits"),
    ],
}


def test_the_valid_base_loads() -> None:
    policy = load_policy(VALID)
    assert policy.name == "acme"
    assert list(policy.spec.plans) == ["professional", "enterprise"]
    # The merged plan inherits the anchored plan's targets.
    assert policy.spec.plans["enterprise"].targets == policy.spec.plans["professional"].targets


def test_every_bad_fixture_is_in_the_table_and_says_what_is_wrong() -> None:
    files = sorted(path.name for path in BAD.glob("*.yaml"))
    assert files == sorted(CASES)
    assert len(files) >= 12
    for path in BAD.glob("*.yaml"):
        first_line = path.read_text(encoding="utf-8").splitlines()[0]
        assert re.match(r"^# \S.{10,}", first_line), f"{path.name}: first line describes it"


@pytest.mark.parametrize("file_name", sorted(CASES))
def test_bad_policy_file_is_reported_at_its_line_and_field(file_name: str) -> None:
    path = BAD / file_name
    with pytest.raises(PolicyFileError) as caught:
        load_policy(path)
    problems = caught.value.problems
    expected = CASES[file_name]
    found = [(p.line, p.field) for p in problems]
    assert found == [(line, field) for line, field, _ in expected], "\n".join(map(str, problems))
    for problem, (_, _, phrase) in zip(problems, expected, strict=True):
        assert problem.file == str(path)
        assert phrase in problem.message, str(problem)
        # file:line: field: message, as check-config prints it.
        field = f" {problem.field}:" if problem.field else ""
        assert str(problem) == f"{path}:{problem.line}:{field} {problem.message}"
    assert str(caught.value) == "\n".join(str(p) for p in problems)


@pytest.mark.parametrize("file_name", sorted(CASES))
def test_parse_policy_reports_the_name_it_is_given(file_name: str) -> None:
    text = (BAD / file_name).read_text(encoding="utf-8")
    with pytest.raises(PolicyFileError) as caught:
        parse_policy(text, "inline.yaml")
    assert {p.file for p in caught.value.problems} == {"inline.yaml"}
    assert [(p.line, p.field) for p in caught.value.problems] == [
        (line, field) for line, field, _ in CASES[file_name]
    ]


# Mistakes written inline as a change to valid.yaml: (old text, new text, line, field, phrase).
INLINE_CASES = [
    pytest.param(
        "timezone: Europe/Bratislava",
        "timezone: 5",
        21,
        "calendars.business.timezone",
        "got 5; expected text or a mapping with keys from_field, default",
        id="timezone-of-no-type",
    ),
    pytest.param(
        "timezone: Europe/Bratislava",
        "timezone: {from_field: customer_timezone, default: Mars/Base}",
        21,
        "calendars.business.timezone.default",
        "'Mars/Base' is not an IANA time zone",
        id="timezone-default-unknown",
    ),
    pytest.param(
        "timezone: Europe/Bratislava",
        "timezone: {from_field: customer_timezone}",
        21,
        "calendars.business.timezone.default",
        "required and missing: add 'default:' under calendars.business.timezone",
        id="timezone-default-missing",
    ),
    pytest.param(
        "country: SK",
        "country: {from_field: country, default: SK}",
        25,
        "calendars.business.holidays.country.from_field",
        "the country can come from customer_country, not 'country'",
        id="country-from-unknown-field",
    ),
    pytest.param(
        "timezone: Europe/Bratislava",
        "timezone: {from_field: timezone, default: Europe/Bratislava}",
        21,
        "calendars.business.timezone.from_field",
        "the time zone can come from customer_timezone, not 'timezone'",
        id="timezone-from-unknown-field",
    ),
    pytest.param(
        "country: SK",
        "country: {from_field: customer_country, default: XX}",
        25,
        "calendars.business.holidays.country.default",
        "'XX' is not a country code the holidays package knows",
        id="country-default-unknown",
    ),
    pytest.param(
        "      country: SK\n",
        "      country: {from_field: customer_country, default: US}\n      subdivision: CA\n",
        26,
        "calendars.business.holidays.subdivision",
        "a subdivision needs a fixed country",
        id="subdivision-with-country-from-ticket",
    ),
    pytest.param(
        'weekdays: ["09:00-12:00", "13:00-17:00"]',
        'weekdays: ["9-17"]',
        23,
        "calendars.business.hours.weekdays.0",
        "'9-17' is not an opening interval such as '09:00-17:00'",
        id="interval-format",
    ),
    pytest.param(
        'weekdays: ["09:00-12:00", "13:00-17:00"]',
        'weekdays: ["09:00-25:00"]',
        23,
        "calendars.business.hours.weekdays.0",
        "'09:00-25:00' has an impossible time (hours 00-24, minutes 00-59)",
        id="interval-impossible-time",
    ),
    pytest.param(
        'weekdays: ["09:00-12:00", "13:00-17:00"]',
        'weekdays: ["09:00-17:00"]\n      monday: ["09:00-12:00"]',
        24,
        "calendars.business.hours.monday",
        "monday is given twice (by 'weekdays' and 'monday'); give each day once",
        id="day-given-twice",
    ),
    pytest.param(
        "      country: SK\n",
        "      country: SK\n    closed_dates: ['24 Dec']\n",
        26,
        "calendars.business.closed_dates.0",
        "got '24 Dec'; expected a date as YYYY-MM-DD",
        id="closed-date-not-a-date",
    ),
    pytest.param(
        "calendars:\n",
        "calendars:\n  24x7:\n    always_open: true\n",
        20,
        "calendars.24x7",
        "the calendar '24x7' is built in (elapsed real time); give yours another name",
        id="calendar-named-24x7",
    ),
    pytest.param(
        "calendars:\n",
        "calendars:\n  support:\n    always_open: true\n    hours: {weekdays: ['09:00-17:00']}\n",
        20,
        "calendars.support",
        "an always_open calendar takes no hours, holidays or dates",
        id="always-open-with-hours",
    ),
    pytest.param(
        "effect: no_targets",
        "effect: no_targets\n    cap: P3",
        19,
        "classification.product_stage.cap",
        "only effect 'cap' takes a cap; effect 'no_targets' removes the targets",
        id="cap-without-effect-cap",
    ),
    pytest.param(
        "effect: no_targets",
        "effect: skip",
        18,
        "classification.product_stage.effect",
        "'skip' is not allowed here; expected 'no_targets' or 'cap'",
        id="unknown-effect",
    ),
    pytest.param(
        "    cap: P3\n",
        "    cap: P7\n",
        14,
        "classification.environment.cap",
        "'P7' is not a priority of this policy",
        id="environment-cap-unknown",
    ),
    pytest.param(
        "classification:\n",
        "classification:\n  channel:\n    priorities: [P1, P0]\n    channels: [phone]\n"
        "    tag: sla_not_by_phone\n",
        14,
        "classification.channel.priorities.1",
        "'P0' is not a priority of this policy",
        id="channel-priority-unknown",
    ),
    pytest.param(
        "classification:\n",
        "classification:\n  matrix:\n    table:\n      high: {high: P1, low: P2}\n"
        "      low: {high: P2}\n",
        16,
        "classification.matrix.table.low",
        "names the columns ['high'] but high names ['high', 'low']; every row of the matrix",
        id="matrix-not-square",
    ),
    pytest.param(
        "classification:\n",
        "clocks:\n  paused_targets: [restoration, first_respons]\nclassification:\n",
        13,
        "clocks.paused_targets.1",
        "'first_respons' is not allowed here; expected 'first_response', 'restoration' or",
        id="paused-target-unknown",
    ),
    pytest.param(
        "classification:\n",
        "clocks:\n  pausing_statuses: [pending, waiting]\nclassification:\n",
        13,
        "clocks.pausing_statuses.1",
        "'waiting' is not a ticket status; expected one of new, open, pending, on_hold",
        id="pausing-status-unknown",
    ),
    pytest.param(
        "P2: {first_response: 4h}",
        "P2: {first_response: {after: 4h, calendr: business}}",
        34,
        "plans.professional.targets.P2.first_response.calendr",
        "unknown key 'calendr' (did you mean 'calendar'?); expected one of after, "
        "next_business_day, calendar",
        id="target-key-typo",
    ),
    pytest.param(
        "P2: {first_response: 4h}",
        "P2: {first_response: {after: 4h, next_business_day: true}}",
        34,
        "plans.professional.targets.P2.first_response",
        "a target is either a duration",
        id="target-both-kinds",
    ),
    pytest.param(
        "trial: professional",
        "professional: enterprise",
        40,
        "plan_aliases.professional",
        "'professional' is already a plan",
        id="alias-shadows-plan",
    ),
    pytest.param(
        "default_priority: P3\n",
        "default_priority: P3\ndefault_plan: gold\n",
        12,
        "default_plan",
        "'gold' is not a plan or plan alias of this policy ['professional', 'enterprise', 'trial']",
        id="default-plan-unknown",
    ),
    pytest.param(
        "  - name: P2\n    label: High\n",
        "  - name: P2\n",
        7,
        "priorities.1.label",
        "required and missing: add 'label:' under priorities.1",
        id="priority-label-missing",
    ),
    pytest.param(
        "priorities:\n",
        "priorities: P1\npriority_list:\n",
        4,
        "priorities",
        "got 'P1'; expected a list",
        id="priorities-not-a-list",
    ),
    pytest.param(
        "    label: High\n",
        "\tlabel: High\n",
        8,
        "",
        "found character '\\t' that cannot start any token",
        id="tab-indentation",
    ),
]


@pytest.mark.parametrize(("old", "new", "line", "field", "phrase"), INLINE_CASES)
def test_inline_mistake_is_located(old: str, new: str, line: int, field: str, phrase: str) -> None:
    text = VALID.read_text(encoding="utf-8")
    assert old in text
    with pytest.raises(PolicyFileError) as caught:
        parse_policy(text.replace(old, new, 1), "acme.yaml")
    problems = caught.value.problems
    located = [p for p in problems if (p.line, p.field) == (line, field)]
    assert located, "\n".join(map(str, problems))
    assert any(phrase in p.message for p in located), "\n".join(map(str, problems))


def test_values_matched_against_tickets_are_lower_cased() -> None:
    text = VALID.read_text(encoding="utf-8")
    text = text.replace("stages: [beta]", "stages: [Beta, PREVIEW]")
    text = text.replace("    cap: P3\n", "    cap: P3\n    production_values: [Production]\n")
    text = text.replace(
        "classification:\n",
        "classification:\n  channel: {priorities: [P1], channels: [Phone], tag: sla_by_phone}\n",
    )
    rules = parse_policy(text, "acme.yaml").classification
    assert rules.product_stage is not None and rules.product_stage.stages == ["beta", "preview"]
    assert rules.environment is not None and rules.environment.production_values == ["production"]
    assert rules.channel is not None and rules.channel.channels == ["phone"]


def test_every_problem_of_a_file_is_reported_at_once() -> None:
    text = VALID.read_text(encoding="utf-8")
    text = text.replace("default_priority: P3", "default_priority: P3\nowner: me")
    text = text.replace("timezone: Europe/Bratislava", "timezone: Mars/Base")
    with pytest.raises(PolicyFileError) as caught:
        parse_policy(text, "acme.yaml")
    assert [(p.line, p.field) for p in caught.value.problems] == [
        (12, "owner"),
        (22, "calendars.business.timezone"),
    ]


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("", "the file is empty"),
        ("# nothing but a comment\n", "the file is empty"),
        ("just some text\n", "the file is a single text value"),
        ("[acme, P1]\n", "the file is a list"),
    ],
)
def test_a_file_that_is_not_a_mapping(text: str, phrase: str) -> None:
    with pytest.raises(PolicyFileError) as caught:
        parse_policy(text, "odd.yaml")
    [problem] = caught.value.problems
    assert (problem.file, problem.line, problem.field) == ("odd.yaml", 1, "")
    assert problem.message.startswith(phrase)
    assert "a policy file is a YAML mapping of keys (name, priorities" in problem.message


def test_a_missing_file_names_the_file_and_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(PolicyFileError) as caught:
        load_policy(path)
    assert caught.value.problems == [
        Problem(str(path), None, "", "cannot read: No such file or directory")
    ]
    assert str(caught.value) == f"{path}: cannot read: No such file or directory"


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(PolicyFileError) as caught:
        load_policy_spec(path)
    [problem] = caught.value.problems
    assert (problem.file, problem.line) == (str(path), None)
    assert problem.message == "is not UTF-8 text; save the policy file as UTF-8"


def test_a_service_config_that_is_not_utf8_names_the_config_file(tmp_path: Path) -> None:
    from slabot.routing_files import load_routing

    path = tmp_path / "slabot.yaml"
    path.write_bytes("routing: caf\xe9\n".encode("latin-1"))
    with pytest.raises(PolicyFileError) as caught:
        load_routing(path)
    assert caught.value.problems == [
        Problem(str(path), None, "", "is not UTF-8 text; save the config file as UTF-8")
    ]


def test_a_problem_without_a_line_or_field_prints_the_file_alone() -> None:
    assert str(Problem("a.yaml", None, "", "cannot read")) == "a.yaml: cannot read"
    assert str(Problem("a.yaml", 3, "", "not valid YAML")) == "a.yaml:3: not valid YAML"
    assert str(Problem("a.yaml", 3, "name", "bad")) == "a.yaml:3: name: bad"


def test_the_shipped_policies_load() -> None:
    paths = bundled_policy_paths()
    assert [p.name for p in paths] == ["cloudtalk.yaml", "zmanda.yaml", "zoom.yaml"]
    for path in paths:
        spec = load_policy_spec(path)
        assert isinstance(spec, PolicySpec)
        assert spec.name == path.stem


def test_merged_plans_of_a_shipped_policy_keep_their_own_keys() -> None:
    zoom = load_policy_spec(next(p for p in bundled_policy_paths() if p.stem == "zoom"))
    assert zoom.plans["premier"].commitment == "slo"
    assert zoom.plans["premier_plus"].commitment == "sla"
    assert zoom.plans["premier_plus"].targets == zoom.plans["premier"].targets


def test_the_complete_example_in_the_documentation_is_valid() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "policies.md").read_text("utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", docs, re.DOTALL)
    complete = next(block for block in blocks if block.startswith("name: acme"))
    spec = parse_policy(complete, "docs/policies.md")
    assert list(spec.plans) == ["professional", "enterprise"]
    assert spec.plan_aliases == {"trial": "professional"}


def test_action_notes_must_name_tags_the_policy_sets() -> None:
    text = VALID.read_text(encoding="utf-8")
    noted = text + "action_notes:\n  sla_reclassified_non_production: Ask for the environment.\n"
    policy = parse_policy(noted, "acme.yaml")
    assert policy.action_note("sla_reclassified_non_production") == "Ask for the environment."
    with pytest.raises(PolicyFileError) as caught:
        parse_policy(text + "action_notes:\n  sla_call_back: Call the customer.\n", "acme.yaml")
    (problem,) = caught.value.problems
    assert problem.field == "action_notes.sla_call_back"
    assert problem.message.startswith("no rule of this policy sets the tag 'sla_call_back'")
