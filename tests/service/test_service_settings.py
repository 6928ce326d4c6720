"""Settings: the environment over config/slabot.yaml's service: section; connectors enabled by
their credentials; a half-configured one named; secrets listed for masking, never shown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slabot.service.settings import ServiceSettingsError, load_settings

ZENDESK = {
    "ZENDESK_URL": "http://127.0.0.1:9",
    "ZENDESK_EMAIL": "bot@example.com",
    "ZENDESK_API_TOKEN": "zendesk-token-value",
    "ZENDESK_WEBHOOK_SECRET": "zendesk-secret-value",
}
JIRA = {
    "JIRA_URL": "http://127.0.0.1:9",
    "JIRA_EMAIL": "bot@example.com",
    "JIRA_API_TOKEN": "jira-token-value",
    "JIRA_WEBHOOK_SECRET": "jira-secret-value",
}
SLACK = {"SLACK_BOT_TOKEN": "xoxb-slack-token-value", "SLACK_SIGNING_SECRET": "slack-secret-value"}


def env(config_file: Path, **extra: str) -> dict[str, str]:
    return {"SLABOT_CONFIG": str(config_file), **extra}


def test_nothing_configured_runs_with_defaults_and_no_connector(config_file: Path) -> None:
    settings = load_settings(env(config_file))
    assert settings.enabled == ()
    assert (settings.service.host, settings.service.port) == ("127.0.0.1", 8000)
    assert settings.database_url.get_backend_name() == "sqlite"
    assert settings.secrets() == []


def test_a_connector_is_enabled_by_its_credentials(config_file: Path) -> None:
    settings = load_settings(env(config_file, **ZENDESK, **JIRA, **SLACK))
    assert settings.enabled == ("zendesk", "jira", "slack")
    assert settings.zendesk_config is not None and settings.zendesk_config.policy == "zoom"
    assert settings.jira_config is not None and settings.jira_config.policy == "cloudtalk"
    assert settings.slack_config is not None and settings.slack_config.digests


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"ZENDESK_URL": "http://127.0.0.1:9"}, "ZENDESK_EMAIL"),
        ({**ZENDESK, "ZENDESK_WEBHOOK_SECRET": ""}, "ZENDESK_WEBHOOK_SECRET"),
        ({"JIRA_URL": "http://127.0.0.1:9", "JIRA_EMAIL": "a@b.c"}, "JIRA_API_TOKEN"),
        ({"SLACK_BOT_TOKEN": "xoxb-1"}, "SLACK_SIGNING_SECRET"),
    ],
)
def test_a_half_configured_connector_stops_the_start_naming_the_missing_setting(
    config_file: Path, given: dict[str, str], named: str
) -> None:
    with pytest.raises(ServiceSettingsError) as caught:
        load_settings(env(config_file, **given))
    assert named in str(caught.value)
    assert "half-configured" in str(caught.value)
    for value in given.values():
        if len(value) > 12 and "://" not in value and "@" not in value:
            assert value not in str(caught.value)


def test_environment_overrides_the_file_which_overrides_the_defaults(tmp_path: Path) -> None:
    config = tmp_path / "slabot.yaml"
    config.write_text(
        "service:\n  port: 9001\n  scan_interval_seconds: 30\n  timezone: Europe/Paris\n",
        encoding="utf-8",
    )
    settings = load_settings(env(config, SLABOT_PORT="9002", SLABOT_POLICIES="a.yaml, b.yaml"))
    assert settings.service.port == 9002
    assert settings.service.scan_interval_seconds == 30
    assert settings.service.timezone == "Europe/Paris"
    assert settings.service.policies == ["a.yaml", "b.yaml"]


def test_every_problem_is_named_with_its_key_at_once(tmp_path: Path) -> None:
    config = tmp_path / "slabot.yaml"
    config.write_text("service:\n  timezone: Mars/Olympus\n  colour: blue\n", encoding="utf-8")
    with pytest.raises(ServiceSettingsError) as caught:
        load_settings(env(config, SLABOT_PORT="eighty", ZENDESK_EMAIL="a@b.c"))
    text = str(caught.value)
    assert "service.port (SLABOT_PORT)" in text
    assert "service.timezone" in text and "Mars/Olympus" in text
    assert "service.colour" in text
    assert "Zendesk is half-configured" in text


def test_a_named_config_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ServiceSettingsError, match="no such file"):
        load_settings({"SLABOT_CONFIG": str(tmp_path / "missing.yaml")})


def test_dashboard_basic_auth_needs_both_user_and_password(config_file: Path) -> None:
    with pytest.raises(ServiceSettingsError, match="dashboard_password"):
        load_settings(env(config_file, SLABOT_DASHBOARD_USER="ops"))


@pytest.mark.parametrize("value", ["", "   ", "\t"])
def test_a_blank_dashboard_token_is_refused_from_the_environment_or_the_file(
    config_file: Path, tmp_path: Path, value: str
) -> None:
    """It used to be dropped silently, leaving the dashboard open."""
    in_file = tmp_path / "blank.yaml"
    in_file.write_text(f"service:\n  dashboard_token: {json.dumps(value)}\n", encoding="utf-8")
    for environ in (env(config_file, SLABOT_DASHBOARD_TOKEN=value), env(in_file)):
        with pytest.raises(ServiceSettingsError) as raised:
            load_settings(environ)
        assert "service.dashboard_token (SLABOT_DASHBOARD_TOKEN): is blank" in str(raised.value)


def test_other_blank_variables_still_count_as_unset(config_file: Path) -> None:
    settings = load_settings(env(config_file, SLABOT_PORT="", SLABOT_WORKER_ID=" "))
    assert (settings.service.port, settings.service.worker_id) == (8000, None)


def test_secrets_are_listed_for_masking_and_never_printed(config_file: Path) -> None:
    settings = load_settings(
        env(
            config_file,
            **ZENDESK,
            **SLACK,
            SLABOT_DASHBOARD_TOKEN="dashboard-token-value",
            DATABASE_URL="postgresql://slabot:database-password@127.0.0.1/slabot",
        )
    )
    assert set(settings.secrets()) >= {
        "zendesk-token-value",
        "zendesk-secret-value",
        "xoxb-slack-token-value",
        "slack-secret-value",
        "dashboard-token-value",
        "database-password",
    }
    shown = repr(settings)
    for secret in settings.secrets():
        assert secret not in shown
