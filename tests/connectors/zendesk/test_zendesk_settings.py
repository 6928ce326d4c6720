"""Settings from an explicit environment, secrets masked, signatures, the request budget."""

from __future__ import annotations

import pytest

from connectors.polling import RequestBudget
from connectors.signatures import signature_base64, signature_hex, signatures_match
from connectors.zendesk.settings import ZendeskSettings
from connectors.zendesk.webhook import sign
from slabot.configuration import Secret, SettingsError

FULL = {
    "ZENDESK_SUBDOMAIN": "acme",
    "ZENDESK_EMAIL": "bot@acme.example",
    "ZENDESK_API_TOKEN": "token-123",
    "ZENDESK_WEBHOOK_SECRET": "whsec-456",
}


def test_complete_settings_point_at_the_subdomain() -> None:
    settings = ZendeskSettings.from_environ(FULL)
    assert settings.base_url == "https://acme.zendesk.com"
    assert settings.api_token is not None and settings.api_token.reveal() == "token-123"


def test_secrets_never_show_in_repr_or_str() -> None:
    settings = ZendeskSettings.from_environ(FULL)
    shown = repr(settings) + str(settings)
    assert "token-123" not in shown and "whsec-456" not in shown
    assert "********" in shown


@pytest.mark.parametrize(
    ("missing", "named"),
    [
        ("ZENDESK_API_TOKEN", "ZENDESK_API_TOKEN"),
        ("ZENDESK_EMAIL", "ZENDESK_EMAIL"),
        ("ZENDESK_WEBHOOK_SECRET", "ZENDESK_WEBHOOK_SECRET"),
        ("ZENDESK_SUBDOMAIN", "ZENDESK_SUBDOMAIN"),
    ],
)
def test_a_half_configured_set_names_the_missing_setting(missing: str, named: str) -> None:
    environ = {k: v for k, v in FULL.items() if k != missing}
    with pytest.raises(SettingsError, match=named) as caught:
        ZendeskSettings.from_environ(environ)
    assert "token-123" not in str(caught.value) and "whsec-456" not in str(caught.value)


def test_an_oauth_token_replaces_email_and_api_token() -> None:
    environ = {"ZENDESK_SUBDOMAIN": "acme", "ZENDESK_OAUTH_TOKEN": "oauth", "X": ""}
    settings = ZendeskSettings.from_environ(environ, webhooks=False)
    assert settings.oauth_token == Secret("oauth") and settings.api_token is None


def test_zendesk_url_overrides_the_base_url_and_refuses_credentials() -> None:
    environ = {**FULL, "ZENDESK_URL": "http://127.0.0.1:8080/"}
    assert ZendeskSettings.from_environ(environ).base_url == "http://127.0.0.1:8080"
    with pytest.raises(SettingsError, match="must not carry credentials"):
        ZendeskSettings.from_environ({**FULL, "ZENDESK_URL": "https://u:p@x.example"})
    with pytest.raises(SettingsError, match="http"):
        ZendeskSettings.from_environ({**FULL, "ZENDESK_URL": "ftp://x.example"})


def test_nothing_set_means_not_configured() -> None:
    assert not ZendeskSettings.configured({"PATH": "/bin"})
    assert ZendeskSettings.configured({"ZENDESK_EMAIL": "x"})


def test_zendesk_signature_is_base64_hmac_of_timestamp_then_body() -> None:
    # Computed independently: printf '2024-04-17T17:18:10Z{"a":1}' |
    #   openssl dgst -sha256 -hmac secret -binary | base64
    expected = "8iM+oBXTtDxQEp8+cUGg3FSJztBudRDYRgQNbnwbjPs="
    assert sign("secret", "2024-04-17T17:18:10Z", b'{"a":1}') == expected
    assert signature_base64("secret", b'2024-04-17T17:18:10Z{"a":1}') == expected
    assert signatures_match(expected, expected)
    assert not signatures_match(expected, None)
    assert not signatures_match(expected, expected[:-2] + "A=")
    assert len(signature_hex("secret", b"x")) == 64


def test_the_request_budget_waits_once_the_window_is_used_up() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    budget = RequestBudget(10, 60.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(10):
        budget.acquire()
    assert slept == []
    now[0] = 5.0
    budget.acquire()
    assert slept == [55.0]
