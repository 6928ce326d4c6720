"""slabot.configuration: one parse/load of every config section, env settings, Secret."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import BaseModel

from bot.errors import SlabotError
from connectors.jira.config import JiraConfig, JiraConfigError
from connectors.jira.settings import JiraSettings
from connectors.zendesk.config import ZendeskConfig, ZendeskConfigError
from connectors.zendesk.settings import ZendeskSettings
from slabot.configuration import (
    Secret,
    SettingsError,
    any_setting,
    load_section,
    parse_section,
    setting,
    unset,
)
from slabot.slack.config import SlackConfig, SlackConfigError, parse_slack_config
from slabot.slack.settings import SlackSettings

SECTIONS = [
    (ZendeskConfig, "zendesk", ZendeskConfigError),
    (JiraConfig, "jira", JiraConfigError),
    (SlackConfig, "slack", SlackConfigError),
]


@pytest.mark.parametrize(("model", "name", "error"), SECTIONS)
def test_every_section_names_the_file_and_the_key_that_is_wrong(
    model: type[BaseModel], name: str, error: type[SlabotError]
) -> None:
    with pytest.raises(error) as caught:
        parse_section(model, name, {name: {"no_such_key": 1}}, "ops.yaml", error)
    assert str(caught.value).startswith(f"ops.yaml: {name}.no_such_key: ")


@pytest.mark.parametrize(("model", "name", "error"), SECTIONS)
def test_a_missing_section_points_at_its_documentation(
    model: type[BaseModel], name: str, error: type[SlabotError]
) -> None:
    with pytest.raises(error, match=rf"^ops.yaml: no '{name}:' section \(see docs/{name}.md\)$"):
        parse_section(model, name, {"other": {}}, "ops.yaml", error)


def test_a_blank_slack_section_takes_the_defaults() -> None:
    assert parse_slack_config({"slack": None}) == SlackConfig()


def test_slack_messages_leave_out_pydantics_value_error_prefix() -> None:
    data = {"slack": {"digests": [{"channel": "C0SUPPORT", "schedule": "0 9 * * 1"}]}}
    with pytest.raises(SlackConfigError) as caught:
        parse_slack_config(data, "ops.yaml")
    assert str(caught.value).startswith("ops.yaml: slack.digests.0.schedule: '0 9 * * 1': ")


def test_a_file_that_cannot_be_read_or_parsed_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "absent.yaml"
    with pytest.raises(JiraConfigError, match=rf"^{missing}: cannot read: "):
        load_section(JiraConfig, "jira", missing, JiraConfigError)
    broken = tmp_path / "broken.yaml"
    broken.write_text("jira: [unclosed\n", encoding="utf-8")
    with pytest.raises(JiraConfigError, match=rf"^{broken}: not valid YAML: "):
        load_section(JiraConfig, "jira", broken, JiraConfigError)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("plan: caf\xe9\n".encode("latin-1"), "is not UTF-8 text; save the config file as UTF-8"),
        (b"jira: " + b"[" * 5_000, "not valid YAML: nested too deeply"),
    ],
)
def test_a_file_that_is_not_utf8_or_nests_too_deeply_is_named_not_a_traceback(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    path = tmp_path / "odd.yaml"
    path.write_bytes(content)
    with pytest.raises(JiraConfigError) as caught:
        load_section(JiraConfig, "jira", path, JiraConfigError)
    assert str(caught.value) == f"{path}: {problem}"


def test_a_secret_never_shows_its_value() -> None:
    token = Secret("xoxb-123")
    assert (repr(token), str(token), f"{token}") == ("Secret('********')", "********", "********")
    assert token.reveal() == "xoxb-123" and token == Secret("xoxb-123") != Secret("other")


def test_settings_are_read_from_the_mapping_given_blank_ones_as_unset() -> None:
    environ = {"A_URL": " https://a.example ", "A_TOKEN": "  "}
    assert setting(environ, "A_URL") == "https://a.example"
    assert setting(environ, "A_TOKEN") is None
    assert any_setting(environ, ("A_URL", "A_TOKEN")) and not any_setting(environ, ("A_TOKEN",))
    assert unset(("A_URL", "x"), ("A_TOKEN", None), ("A_EMAIL", None)) == ["A_TOKEN", "A_EMAIL"]


@pytest.mark.parametrize(
    ("read", "message"),
    [
        (
            ZendeskSettings.from_environ,
            "Zendesk is not configured: set ZENDESK_SUBDOMAIN, ZENDESK_EMAIL and "
            "ZENDESK_API_TOKEN (see docs/zendesk.md)",
        ),
        (
            JiraSettings.from_environ,
            "Jira is not configured: set JIRA_URL, JIRA_EMAIL and JIRA_API_TOKEN "
            "(see docs/jira.md)",
        ),
        (
            SlackSettings.from_environ,
            "Slack is not configured: set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET "
            "(see docs/slack.md)",
        ),
    ],
)
def test_a_part_asked_for_with_nothing_set_says_what_to_set(
    read: Callable[[dict[str, str]], object], message: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        read({})
    assert str(caught.value) == message
