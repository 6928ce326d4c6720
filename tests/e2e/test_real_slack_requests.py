"""Slack's request bodies as bolt-python's tests keep them (tests/fixtures/real/slack, see
SOURCES.md) through the running service's ``POST /slack/events``.

Each excerpt is the body of a slash command, a ``block_actions`` and a ``view_submission``
request in Slack's shape (an enterprise install, a message container, a modal's state),
signed as Slack signs (``v0=`` HMAC of ``v0:{timestamp}:{body}``) and sent as Slack sends it
(form-encoded; interactive payloads in ``payload=``). They name commands, actions and views
slabot does not own, so slabot must answer without a 5xx and without posting or opening anything
in Slack, and count the request.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest

from slabot.demo.environment import DemoSystems
from tests.e2e.harness import RunningService, signed_slack, start_service, wait_until

pytestmark = pytest.mark.slow

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real" / "slack"
FORM = "application/x-www-form-urlencoded"


def excerpt_value(name: str) -> Any:
    """The literal assigned in a verbatim excerpt of a bolt-python test (``body = {...}``)."""
    tree = ast.parse((REAL / name).read_text(encoding="utf-8"))
    [statement] = tree.body
    assert isinstance(statement, ast.Assign)
    return ast.literal_eval(statement.value)


def real_requests() -> dict[str, str]:
    """Each request's form-encoded body, by excerpt name."""
    return {
        "slash_command.body.py.txt": excerpt_value("slash_command.body.py.txt"),
        "block_actions.body.py.txt": urlencode(
            {"payload": json.dumps(excerpt_value("block_actions.body.py.txt"))}
        ),
        "view_submission.body.py.txt": urlencode(
            {"payload": json.dumps(excerpt_value("view_submission.body.py.txt"))}
        ),
    }


@pytest.fixture
def running(systems: DemoSystems, tmp_path: Path, pg_url: str) -> Iterator[RunningService]:
    from tests.e2e.test_e2e_flows import MONDAY

    service = start_service(systems, tmp_path, pg_url, MONDAY)
    try:
        yield service
    finally:
        service.stop()


def test_real_slack_request_bodies_are_answered_without_a_5xx_or_a_slack_post(
    running: RunningService,
) -> None:
    bodies = real_requests()
    assert len(bodies) == 3
    calls_before = len(running.systems.slack.calls)
    for name, body in bodies.items():
        reply = running.post("/slack/events", signed_slack(body, FORM), body.encode())
        assert reply.status < 500, f"{name}: {reply.status} {reply.text}"
        assert (reply.status, reply.json()) == (404, {"error": "unhandled request"}), name
    # Bolt's authorize may ask ``auth.test`` who the token is; nothing is posted or opened.
    made = {call.method for call in running.systems.slack.calls[calls_before:]}
    assert made <= {"auth.test"}, made
    # The same real slash command, addressed to slabot's own command (/sla) and answerable at
    # the fake's response_url, is acknowledged and answered there.
    fields = dict(parse_qsl(bodies["slash_command.body.py.txt"]))
    fields |= {"command": "/sla", "response_url": running.systems.slack.response_url("real")}
    own = urlencode(fields)
    reply = running.post("/slack/events", signed_slack(own, FORM), own.encode())
    assert reply.status == 200, reply.text
    wait_until(lambda: running.systems.slack.responses, "the /sla answer at the response_url")
    counted = sum(running.service.runtime.slack_counts.values())
    assert counted >= len(bodies), running.service.runtime.slack_counts
