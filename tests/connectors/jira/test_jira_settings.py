"""Jira settings from an explicit environment: complete or refused by name, secrets masked."""

from __future__ import annotations

import pytest

from connectors.jira.settings import JiraSettings
from slabot.configuration import SettingsError

ENV = {
    "JIRA_URL": "https://acme.atlassian.net/",
    "JIRA_EMAIL": "slabot@acme.example",
    "JIRA_API_TOKEN": "ATATT-secret-token",
    "JIRA_WEBHOOK_SECRET": "hook-secret",
}


def test_complete_settings_are_read_and_secrets_never_shown() -> None:
    settings = JiraSettings.from_environ(ENV)
    assert settings.url == "https://acme.atlassian.net"
    assert settings.api_token.reveal() == "ATATT-secret-token"
    shown = repr(settings) + str(settings)
    assert "ATATT" not in shown and "hook-secret" not in shown
    assert "********" in shown


def test_nothing_set_means_jira_is_off() -> None:
    assert not JiraSettings.configured({})
    with pytest.raises(SettingsError, match="Jira is not configured"):
        JiraSettings.from_environ({})


@pytest.mark.parametrize("missing", ["JIRA_URL", "JIRA_EMAIL", "JIRA_API_TOKEN"])
def test_a_half_configured_jira_names_what_is_missing(missing: str) -> None:
    env = {k: v for k, v in ENV.items() if k != missing}
    with pytest.raises(SettingsError, match=f"set {missing}") as caught:
        JiraSettings.from_environ(env)
    assert "ATATT" not in str(caught.value)


def test_the_webhook_secret_is_needed_for_webhooks_only() -> None:
    env = {k: v for k, v in ENV.items() if k != "JIRA_WEBHOOK_SECRET"}
    with pytest.raises(SettingsError, match="JIRA_WEBHOOK_SECRET"):
        JiraSettings.from_environ(env)
    assert JiraSettings.from_environ(env, webhooks=False).webhook_secret is None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("acme.atlassian.net", "must be the site's URL"),
        ("https://bot:pw@acme.atlassian.net", "must not carry credentials"),
        ("https://acme.atlassian.net/browse/SUP-1", "names a page or an API path"),
        ("https://acme.atlassian.net/rest/api/3", "names a page or an API path"),
    ],
)
def test_a_wrong_url_is_explained(url: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        JiraSettings.from_environ({**ENV, "JIRA_URL": url})
