"""The app manifest a workspace admin installs, and the HTTP endpoint Slack calls."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlencode

import yaml
from slack_sdk.signature import SignatureVerifier
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from slabot.fakes.slack import FakeSlack, reference_methods
from slabot.slack.transport import EVENTS_PATH, slack_events_endpoint, socket_mode_handler
from tests.slack.slack_support import LEAD, SIGNING_SECRET, Harness

MANIFEST = Path(__file__).parents[2] / "slack" / "manifest.yaml"
METHODS_CALLED = (
    "auth.test",
    "chat.postMessage",
    "chat.update",
    "views.open",
    "views.publish",
    "users.info",
    "users.lookupByEmail",
    "conversations.open",
    "usergroups.users.list",
)
_MODERN = {"chat:write:bot": "chat:write", "chat:write:user": "chat:write"}


def test_the_manifest_declares_the_command_the_urls_the_event_and_every_scope_needed() -> None:
    manifest = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    (command,) = manifest["features"]["slash_commands"]
    assert command["command"] == "/sla"
    urls = [
        command["url"],
        manifest["settings"]["event_subscriptions"]["request_url"],
        manifest["settings"]["interactivity"]["request_url"],
    ]
    assert urls == ["https://YOUR-SLABOT-HOST/slack/events"] * 3
    assert manifest["settings"]["event_subscriptions"]["bot_events"] == ["app_home_opened"]
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    reference = reference_methods()
    for method in METHODS_CALLED:
        needed = {_MODERN.get(s, s) for s in reference[method]["scopes"]} - {"none"}
        assert not needed or needed & scopes, (method, needed)
    assert "commands" in scopes


def test_the_http_endpoint_verifies_and_dispatches_in_a_worker_thread(
    harness: Harness, fake: FakeSlack
) -> None:
    app = Starlette(
        routes=[Route(EVENTS_PATH, slack_events_endpoint(harness.app), methods=["POST"])]
    )
    body = urlencode(
        {
            "command": "/sla",
            "text": "help",
            "user_id": LEAD,
            "team_id": fake.team_id,
            "response_url": fake.response_url(),
            "trigger_id": "t1",
        }
    )
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(SIGNING_SECRET).generate_signature(timestamp=timestamp, body=body)
    headers = {
        "content-type": "application/x-www-form-urlencoded",
        "x-slack-request-timestamp": timestamp,
        "x-slack-signature": signature,
    }
    with TestClient(app) as http:
        answered = http.post(EVENTS_PATH, content=body, headers=headers)
        refused = http.post(
            EVENTS_PATH, content=body, headers={**headers, "x-slack-signature": "v0=bad"}
        )
    assert answered.status_code == 200
    assert refused.status_code == 401
    (response,) = fake.wait_responses()
    assert "/sla explain TICKET" in str(response["blocks"])


def test_socket_mode_needs_the_app_token(harness: Harness) -> None:
    try:
        socket_mode_handler(harness.app, harness.settings)
    except ValueError as error:
        assert "SLACK_APP_TOKEN" in str(error)
    else:
        raise AssertionError("Socket Mode started without an app token")
