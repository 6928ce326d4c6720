"""Zendesk credentials and addresses from the environment (never printed)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from slabot import configuration
from slabot.configuration import Secret, SettingsError

SETTINGS = (
    "ZENDESK_SUBDOMAIN",
    "ZENDESK_EMAIL",
    "ZENDESK_API_TOKEN",
    "ZENDESK_OAUTH_TOKEN",
    "ZENDESK_WEBHOOK_SECRET",
    "ZENDESK_URL",
)


@dataclass(frozen=True, slots=True)
class ZendeskSettings:
    """How to reach one Zendesk account. ``base_url`` is ``https://{subdomain}.zendesk.com``
    unless ``ZENDESK_URL`` names another (a host-mapped account, a local fake)."""

    subdomain: str
    """``acme`` for acme.zendesk.com (or ``ZENDESK_URL``)."""
    base_url: str
    """Another base URL instead of the subdomain's: a host-mapped account, or
    ``http://127.0.0.1:8080`` for a local server."""
    email: str | None
    """slabot's agent e-mail, with ``ZENDESK_API_TOKEN``."""
    api_token: Secret | None
    """An API token (Admin Center > Apps and integrations > Zendesk API)."""
    oauth_token: Secret | None
    """An OAuth access token, instead of the e-mail and API token."""
    webhook_secret: Secret | None
    """The webhook's signing secret: deliveries signed otherwise are refused (401)."""

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str] | None = None, *, webhooks: bool = True
    ) -> ZendeskSettings:
        """Read the ``ZENDESK_*`` settings; a missing one is named in the error.

        ``webhooks=False`` (backfill, polling only) does not require the signing secret.
        """
        env = configuration.environment(environ)
        subdomain = configuration.setting(env, "ZENDESK_SUBDOMAIN")
        url = configuration.setting(env, "ZENDESK_URL")
        email = configuration.setting(env, "ZENDESK_EMAIL")
        api_token = configuration.secret_setting(env, "ZENDESK_API_TOKEN")
        oauth_token = configuration.secret_setting(env, "ZENDESK_OAUTH_TOKEN")
        webhook_secret = configuration.secret_setting(env, "ZENDESK_WEBHOOK_SECRET")

        if not ZendeskSettings.configured(env):
            raise configuration.not_configured_error(
                "Zendesk", ["ZENDESK_SUBDOMAIN", "ZENDESK_EMAIL", "ZENDESK_API_TOKEN"]
            )
        missing = []
        if subdomain is None and url is None:
            missing.append("ZENDESK_SUBDOMAIN")
        if oauth_token is None:
            if api_token is None and email is None:
                missing.append("ZENDESK_EMAIL and ZENDESK_API_TOKEN (or ZENDESK_OAUTH_TOKEN)")
            elif api_token is None:
                missing.append("ZENDESK_API_TOKEN")
            elif email is None:
                missing.append("ZENDESK_EMAIL")
        elif api_token is not None:
            raise SettingsError(
                "Zendesk: set ZENDESK_API_TOKEN (with ZENDESK_EMAIL) or ZENDESK_OAUTH_TOKEN, "
                "not both"
            )
        if webhooks and webhook_secret is None:
            missing.append("ZENDESK_WEBHOOK_SECRET")
        if missing:
            raise configuration.missing_settings_error(
                "Zendesk",
                missing,
                "see docs/zendesk.md; leave every ZENDESK_* setting unset to disable Zendesk",
            )
        base_url = _base_url(url) if url else f"https://{_subdomain(subdomain or '')}.zendesk.com"
        return cls(
            subdomain=_subdomain(subdomain) if subdomain else _host_label(base_url),
            base_url=base_url,
            email=email,
            api_token=api_token,
            oauth_token=oauth_token,
            webhook_secret=webhook_secret,
        )

    @staticmethod
    def configured(environ: Mapping[str, str] | None = None) -> bool:
        """Whether any ``ZENDESK_*`` setting is given (the connector is then enabled and its
        settings must be complete)."""
        return configuration.any_setting(environ, SETTINGS)


def _subdomain(text: str) -> str:
    value = text.strip().lower()
    if value.endswith(".zendesk.com"):
        value = value.removesuffix(".zendesk.com")
    value = value.removeprefix("https://").removeprefix("http://").strip("/")
    if not value or not all(c.isalnum() or c == "-" for c in value):
        raise SettingsError(
            "ZENDESK_SUBDOMAIN must be the account's subdomain, like 'acme' for acme.zendesk.com"
        )
    return value


def _base_url(text: str) -> str:
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(
            "ZENDESK_URL must be an http(s) URL like https://support.example.com or "
            "http://127.0.0.1:8080"
        )
    if "." not in parts.hostname:
        raise SettingsError(
            f"ZENDESK_URL host {parts.hostname!r} has no dot; name a local server by its "
            "address (http://127.0.0.1:8080), not as localhost"
        )
    if parts.username or parts.password:
        raise SettingsError(
            "ZENDESK_URL must not carry credentials; use ZENDESK_EMAIL and ZENDESK_API_TOKEN"
        )
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def _host_label(base_url: str) -> str:
    host = urlsplit(base_url).hostname or "zendesk"
    label = host.split(".")[0]
    return label if label.isalpha() else "zendesk"
