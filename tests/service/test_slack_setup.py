"""The Slack set-up order of docs/slack.md, against a real ``slabot run`` over HTTP.

Slack checks a Request URL when it is saved (Event Subscriptions sends a signed
``url_verification`` challenge and wants it echoed); slash commands and interactivity post to
the same ``/slack/events``. So slabot must be running with ``SLACK_SIGNING_SECRET`` before the
URLs are set or re-verified: these tests answer the challenge as Slack sends it, refuse it
signed with another app's secret or with a clock five minutes off (what Slack's "Your URL
didn't respond with the value of the challenge parameter" means), and show what a slabot
started without its Slack settings answers.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import pytest
import yaml
from processes import free_port, start, stop, wait_ready

from slabot.demo.environment import (
    SLACK_SIGNING_SECRET,
    DemoSystems,
    start_systems,
    write_config,
)

START = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]
EVENTS = "/slack/events"


@dataclass
class Running:
    port: int
    systems: DemoSystems

    def post(self, headers: dict[str, str], body: bytes) -> tuple[int, str]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request("POST", EVENTS, body=body, headers=headers)
            answer = connection.getresponse()
            return answer.status, answer.read().decode()
        finally:
            connection.close()


def signed(
    body: bytes, content_type: str, secret: str = SLACK_SIGNING_SECRET, age: float = 0.0
) -> dict[str, str]:
    """Headers as Slack sends them: ``v0=`` HMAC-SHA256 of ``v0:{timestamp}:{body}``."""
    stamp = str(int(time.time() - age))
    digest = hmac.new(secret.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256)
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": f"v0={digest.hexdigest()}",
    }


def challenge(value: str) -> bytes:
    return json.dumps({"token": "legacy", "challenge": value, "type": "url_verification"}).encode()


def run(folder: Path, systems: DemoSystems, **without: str) -> tuple[int, object]:
    environ = systems.environ(
        f"sqlite:///{folder / 'slabot.db'}",
        write_config(folder / "slabot.yaml"),
        {"SLABOT_WEBHOOK_WORKER": "thread"},
    )
    for name in without:
        environ.pop(name)
    port, log = free_port(), folder / "run.log"
    process = start(environ, port, log, folder)
    wait_ready(f"http://127.0.0.1:{port}", process, log)
    return port, process


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """``slabot run`` with ``SLACK_BOT_TOKEN`` and ``SLACK_SIGNING_SECRET`` (step 3 of the
    set-up), the demo's fake Slack behind ``SLACK_API_URL``."""
    systems = start_systems(START)
    port, process = run(tmp_path_factory.mktemp("slack"), systems)
    try:
        yield Running(port, systems)
    finally:
        stop(process)  # type: ignore[arg-type]
        systems.stop()


def test_the_request_url_answers_slack_s_url_verification_challenge(running: Running) -> None:
    body = challenge("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P")
    status, text = running.post(signed(body, "application/json"), body)
    assert status == 200, text
    assert json.loads(text) == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}


def test_the_slash_command_posts_to_the_same_url_and_is_answered(running: Running) -> None:
    body = urlencode(
        {
            "command": "/sla",
            "text": "help",
            "user_id": "U0READER",
            "team_id": running.systems.slack.team_id,
            "response_url": running.systems.slack.response_url(),
            "trigger_id": "trigger-1",
        }
    ).encode()
    status, text = running.post(signed(body, "application/x-www-form-urlencoded"), body)
    assert status == 200, text
    (response,) = running.systems.slack.wait_responses()
    assert "/sla explain TICKET" in str(response["blocks"])


@pytest.mark.parametrize(
    ("why", "secret", "age"),
    [
        ("another app's signing secret (the app was re-created)", "old-app-signing-secret", 0.0),
        ("a clock six minutes off", SLACK_SIGNING_SECRET, 360.0),
    ],
)
def test_a_challenge_slabot_cannot_verify_is_refused_so_slack_shows_the_url_as_failing(
    running: Running, why: str, secret: str, age: float
) -> None:
    body = challenge("never-echoed")
    status, text = running.post(signed(body, "application/json", secret, age), body)
    assert status == 401, why
    assert "never-echoed" not in text


def test_without_its_slack_settings_slabot_answers_404_naming_the_doc(tmp_path: Path) -> None:
    systems = start_systems(START)
    port, process = run(
        tmp_path, systems, SLACK_BOT_TOKEN="", SLACK_SIGNING_SECRET="", SLACK_API_URL=""
    )
    try:
        body = challenge("c")
        status, text = Running(port, systems).post(signed(body, "application/json"), body)
        assert status == 404
        assert json.loads(text)["error"] == (
            "Slack is not configured on this slabot (see docs/slack.md)"
        )
    finally:
        stop(process)  # type: ignore[arg-type]
        systems.stop()


def test_the_set_up_order_in_docs_names_every_request_url_of_the_manifest() -> None:
    """Each place the manifest sets a URL is one the doc says to re-verify after a host
    change, in the order Slack's settings pages take them."""
    manifest = yaml.safe_load((ROOT / "slack" / "manifest.yaml").read_text(encoding="utf-8"))
    urls = {
        "Slash Commands": manifest["features"]["slash_commands"][0]["url"],
        "Interactivity & Shortcuts": manifest["settings"]["interactivity"]["request_url"],
        "Event Subscriptions": manifest["settings"]["event_subscriptions"]["request_url"],
    }
    assert set(urls.values()) == {f"https://YOUR-SLABOT-HOST{EVENTS}"}
    doc = (ROOT / "docs" / "slack.md").read_text(encoding="utf-8")
    order = doc[doc.index("## 1. Set up, in this order") : doc.index("### Scopes")]
    for page in urls:
        assert f"**{page}**" in order, page
    steps = [int(n) for n in re.findall(r"^(\d+)\. ", order, flags=re.MULTILINE)]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) >= 6
    for needed in ("SLACK_SIGNING_SECRET", "SLACK_BOT_TOKEN", "slabot run", "url_verification"):
        assert needed in order, needed
