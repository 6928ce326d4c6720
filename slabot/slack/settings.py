"""Slack credentials and addresses from the environment (secrets never printed)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from slabot import configuration
from slabot.configuration import Secret, SettingsError

SETTINGS = ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_API_URL", "SLACK_APP_TOKEN")
DEFAULT_API_URL = "https://slack.com/api/"


@dataclass(frozen=True, slots=True)
class SlackSettings:
    """How slabot talks to one Slack workspace.

    ``bot_token`` (``xoxb-``) authenticates Web API calls; ``signing_secret`` verifies the
    requests Slack sends to ``POST /slack/events``; ``app_token`` (``xapp-``), when set,
    selects Socket Mode instead of HTTP. ``api_url`` is Slack's Web API unless
    ``SLACK_API_URL`` names another (a proxy, a local fake).
    """

    bot_token: Secret
    """The Bot User OAuth Token, ``xoxb-...``."""
    signing_secret: Secret
    """The app's signing secret: requests signed otherwise, or more than 5 minutes old, are refused
    (401)."""
    api_url: str = DEFAULT_API_URL
    """Another Web API base URL (a proxy, a local fake)."""
    app_token: Secret | None = None
    """An app-level token, ``xapp-...``: selects Socket Mode instead of HTTP."""

    @property
    def socket_mode(self) -> bool:
        return self.app_token is not None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> SlackSettings:
        """Read the ``SLACK_*`` settings; a missing one is named in the error."""
        env = configuration.environment(environ)
        if not cls.configured(env):
            raise configuration.not_configured_error(
                "Slack", ["SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"]
            )
        bot_token = configuration.secret_setting(env, "SLACK_BOT_TOKEN")
        signing_secret = configuration.secret_setting(env, "SLACK_SIGNING_SECRET")
        app_token = configuration.secret_setting(env, "SLACK_APP_TOKEN")
        missing = configuration.unset(
            ("SLACK_BOT_TOKEN", bot_token), ("SLACK_SIGNING_SECRET", signing_secret)
        )
        if missing:
            raise configuration.missing_settings_error(
                "Slack",
                missing,
                "see docs/slack.md; leave every SLACK_* setting unset to disable Slack",
            )
        assert bot_token is not None and signing_secret is not None
        if not bot_token.reveal().startswith("xoxb-"):
            raise SettingsError(
                "SLACK_BOT_TOKEN must be the app's Bot User OAuth Token (it starts with "
                "xoxb-; OAuth & Permissions in the app's settings)"
            )
        if app_token is not None and not app_token.reveal().startswith("xapp-"):
            raise SettingsError(
                "SLACK_APP_TOKEN must be an app-level token with connections:write (it starts "
                "with xapp-; Basic Information > App-Level Tokens), or unset for HTTP mode"
            )
        api_url = _api_url(configuration.setting(env, "SLACK_API_URL") or DEFAULT_API_URL)
        return cls(bot_token, signing_secret, api_url, app_token)

    @staticmethod
    def configured(environ: Mapping[str, str] | None = None) -> bool:
        """Whether any ``SLACK_*`` setting is given (Slack is then enabled and its settings
        must be complete)."""
        return configuration.any_setting(environ, SETTINGS)


def _api_url(text: str) -> str:
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(
            "SLACK_API_URL must be an http(s) URL like https://slack.com/api/ or "
            "http://127.0.0.1:8080/api/"
        )
    if parts.username or parts.password or parts.query:
        raise SettingsError(
            "SLACK_API_URL is the Web API's base address only, like https://slack.com/api/"
        )
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}/"
