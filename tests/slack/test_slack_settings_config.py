"""Slack settings from an explicit environment (secrets masked) and the ``slack:`` section."""

from __future__ import annotations

from pathlib import Path

import pytest

from slabot.configuration import SettingsError
from slabot.slack.config import SlackConfigError, load_slack_config, parse_slack_config
from slabot.slack.settings import SlackSettings

FULL = {"SLACK_BOT_TOKEN": "xoxb-123-secret", "SLACK_SIGNING_SECRET": "sign-456"}


def test_complete_settings_use_slacks_api_and_http_mode() -> None:
    settings = SlackSettings.from_environ(FULL)
    assert settings.api_url == "https://slack.com/api/"
    assert settings.bot_token.reveal() == "xoxb-123-secret"
    assert not settings.socket_mode


def test_an_app_token_selects_socket_mode_and_an_api_url_another_server() -> None:
    settings = SlackSettings.from_environ(
        {**FULL, "SLACK_APP_TOKEN": "xapp-1-abc", "SLACK_API_URL": "http://127.0.0.1:8080/api"}
    )
    assert settings.socket_mode and settings.api_url == "http://127.0.0.1:8080/api/"


def test_secrets_never_show() -> None:
    settings = SlackSettings.from_environ({**FULL, "SLACK_APP_TOKEN": "xapp-1-abc"})
    shown = repr(settings) + str(settings)
    assert "xoxb-123-secret" not in shown and "sign-456" not in shown and "xapp-1-abc" not in shown
    assert "********" in shown


@pytest.mark.parametrize(
    ("environ", "says"),
    [
        ({}, "Slack is not configured: set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET"),
        ({"SLACK_BOT_TOKEN": "xoxb-1"}, "Slack is half-configured: set SLACK_SIGNING_SECRET"),
        ({"SLACK_SIGNING_SECRET": "s"}, "set SLACK_BOT_TOKEN"),
        ({**FULL, "SLACK_BOT_TOKEN": "xoxp-user"}, "starts with xoxb-"),
        ({**FULL, "SLACK_APP_TOKEN": "xoxb-nope"}, "starts with xapp-"),
        ({**FULL, "SLACK_API_URL": "slack.com"}, "SLACK_API_URL must be an http(s) URL"),
    ],
)
def test_bad_settings_name_what_to_set(environ: dict[str, str], says: str) -> None:
    with pytest.raises(SettingsError, match=None) as caught:
        SlackSettings.from_environ(environ)
    assert says in str(caught.value)
    assert "secret" not in str(caught.value).replace("SECRET", "") or "sign-456" not in str(
        caught.value
    )


def test_defaults() -> None:
    config = parse_slack_config({"slack": None})
    assert config.language == "en"
    assert config.nudges.permilles("first_response") == (750, 1000)
    assert config.reclassify.user_groups == [] and config.digests == []


@pytest.mark.parametrize(
    ("section", "says"),
    [
        ({"langauge": "fr"}, "slack.langauge: Extra inputs are not permitted"),
        ({"language": "de"}, "slack.language: Input should be 'en', 'fr', 'it' or 'pl'"),
        ({"reclassify": {"user_groups": ["@sla-leads"]}}, "not a user group id"),
        ({"reclassify": {"users": ["ana"]}}, "not a user id"),
        ({"nudges": {"default_channel": "#support"}}, "not a channel id"),
        ({"nudges": {"thresholds": {"first_response": [0.875]}}}, "in whole percent"),
        ({"nudges": {"thresholds": {"first_response": [1.5]}}}, "at most 1.0"),
        ({"nudges": {"thresholds": {"first_reply": [0.5]}}}, "unknown target 'first_reply'"),
        (
            {"digests": [{"channel": "C0A", "schedule": "0 9 * * 1-5"}]},
            "write the day of week with names (mon-fri",
        ),
        ({"digests": [{"channel": "C0A", "schedule": "0 9 * *"}]}, "give five cron fields"),
        ({"digests": [{"channel": "C0A", "schedule": "0 25 * * mon"}]}, "slack.digests.0.schedule"),
        (
            {"digests": [{"channel": "C0A", "schedule": "0 9 * * mon", "timezone": "Paris"}]},
            "unknown time zone 'Paris'",
        ),
        (
            {"digests": [{"channel": "C0A", "schedule": "0 9 * * mon", "when_empty": "silent"}]},
            "slack.digests.0.when_empty",
        ),
    ],
)
def test_an_invalid_section_names_the_key_and_what_to_do(
    section: dict[str, object], says: str
) -> None:
    with pytest.raises(SlackConfigError) as caught:
        parse_slack_config({"slack": section}, "config/slabot.yaml")
    assert says in str(caught.value)
    assert str(caught.value).startswith("config/slabot.yaml: slack.")


def test_a_file_without_the_section_says_so(tmp_path: Path) -> None:
    path = tmp_path / "slabot.yaml"
    path.write_text("zendesk: {policy: zoom}\n", encoding="utf-8")
    with pytest.raises(SlackConfigError, match="no 'slack:' section"):
        load_slack_config(path)


def test_the_shipped_config_file_has_a_valid_slack_section() -> None:
    config = load_slack_config(Path(__file__).parents[2] / "config" / "slabot.yaml")
    assert config.digests and config.nudges.enabled
    for digest in config.digests:
        digest.trigger()
