"""Jira credentials and address from the environment (never printed)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from slabot import configuration
from slabot.configuration import Secret, SettingsError

SETTINGS = ("JIRA_URL", "JIRA_EMAIL", "JIRA_API_TOKEN", "JIRA_WEBHOOK_SECRET")


@dataclass(frozen=True, slots=True)
class JiraSettings:
    """How to reach one Jira Cloud site: ``https://acme.atlassian.net`` with an Atlassian
    account's email and API token (basic auth, as Atlassian documents for scripts)."""

    url: str
    """The site, ``https://acme.atlassian.net``."""
    email: str
    """The Atlassian account slabot acts as."""
    api_token: Secret
    """That account's API token (id.atlassian.com > Security > API tokens)."""
    webhook_secret: Secret | None
    """The admin webhook's secret: deliveries signed otherwise are refused (401)."""

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str] | None = None, *, webhooks: bool = True
    ) -> JiraSettings:
        """Read the ``JIRA_*`` settings; a missing one is named in the error.

        ``webhooks=False`` (backfill, polling only) does not require the webhook secret.
        """
        env = configuration.environment(environ)
        if not JiraSettings.configured(env):
            raise configuration.not_configured_error(
                "Jira", ["JIRA_URL", "JIRA_EMAIL", "JIRA_API_TOKEN"]
            )
        url = configuration.setting(env, "JIRA_URL")
        email = configuration.setting(env, "JIRA_EMAIL")
        api_token = configuration.secret_setting(env, "JIRA_API_TOKEN")
        webhook_secret = configuration.secret_setting(env, "JIRA_WEBHOOK_SECRET")
        missing = configuration.unset(
            ("JIRA_URL", url), ("JIRA_EMAIL", email), ("JIRA_API_TOKEN", api_token)
        )
        if webhooks and webhook_secret is None:
            missing.append("JIRA_WEBHOOK_SECRET")
        if missing:
            raise configuration.missing_settings_error(
                "Jira",
                missing,
                "see docs/jira.md; leave every JIRA_* setting unset to disable Jira",
            )
        assert url is not None and email is not None and api_token is not None
        return cls(
            url=_base_url(url), email=email, api_token=api_token, webhook_secret=webhook_secret
        )

    @staticmethod
    def configured(environ: Mapping[str, str] | None = None) -> bool:
        """Whether any ``JIRA_*`` setting is given (the connector is then enabled and its
        settings must be complete)."""
        return configuration.any_setting(environ, SETTINGS)


def _base_url(text: str) -> str:
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(
            "JIRA_URL must be the site's URL, like https://acme.atlassian.net (or "
            "http://127.0.0.1:8080 for a local server)"
        )
    if parts.username or parts.password:
        raise SettingsError(
            "JIRA_URL must not carry credentials; use JIRA_EMAIL and JIRA_API_TOKEN"
        )
    if parts.query or parts.fragment:
        raise SettingsError("JIRA_URL is the site's address only, like https://acme.atlassian.net")
    path = parts.path.rstrip("/")
    if "/browse/" in f"{path}/" or "/rest/" in f"{path}/":
        raise SettingsError(
            f"JIRA_URL {text.strip()!r} names a page or an API path; give the site's address, "
            "like https://acme.atlassian.net"
        )
    return f"{parts.scheme}://{parts.netloc}{path}"
