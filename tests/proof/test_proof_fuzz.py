"""Hostile input, fuzzed: the three endpoints that take requests from outside.

For each of ``POST /webhooks/zendesk``, ``/webhooks/jira`` and ``/slack/events``, 5,000
generated requests (hypothesis, derandomized: the same cases on every run) go through the
service's ASGI app in this process (Starlette's test client, the app's lifespan running its
webhook workers), mixing:

- unsigned garbage: any body with any of the signature headers, given random values;
- correctly signed (with the test secrets, a fresh timestamp) but malformed requests: bodies
  near the shape each sender uses (a Zendesk trigger body or event, a Jira webhook, a Slack
  command, interaction or event) with wrong types, huge or odd numbers, odd digits, deep
  nesting, bad UTF-8, and plain random bytes, so that the parsers are reached.

Every answer must be below 500; whatever is refused must be a 4xx saying why (a JSON
``error``, or Slack's own answer); a refused request must leave the database as it was (no
commit at all, per SQLite's ``data_version``, and the same row count in every table).
Unsigned requests must all be answered 401.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.zendesk.webhook import sign as zendesk_sign
from slabot.demo.environment import (
    AGENT,
    JIRA_SECRET,
    SLACK_SIGNING_SECRET,
    ZENDESK_SECRET,
)
from tests.proof.service_support import Target

pytestmark = pytest.mark.slow

CASES = settings(
    max_examples=5000,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --- what requests are made of ------------------------------------------------------------------

HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)
"""Header values as an HTTP client can send them (printable ASCII)."""
ODD_INTEGERS = st.sampled_from(
    [0, -1, 1, 2**31, 2**53 + 1, 2**63, -(2**63), 10**20, 10**400, -(10**400)]
)
ODD_TEXT = st.sampled_from(
    ["", " ", "²", "١٢٣", "12 34", "0x1f", "1e3", "9" * 5000, "{{ticket.id}}", "\u0000", "💥"]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | ODD_INTEGERS
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | ODD_TEXT
)
JSON = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
INSTANTS = st.one_of(
    st.sampled_from(["2026-11-16T09:00:00Z", "2026-11-16T09:00:00", "9999-12-31T23:59:59+14:00"]),
    st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
    SCALARS,
)


@st.composite
def deep(draw: st.DrawFn) -> bytes:
    """JSON nested far deeper than any parser's recursion limit."""
    depth = draw(st.integers(min_value=500, max_value=100_000))
    opening, closing = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
    return (opening * depth + "1" + closing * depth).encode()


def encoded(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


def raw_bodies() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=300),
        deep(),
        JSON.map(encoded),
        st.sampled_from([b"", b"null", b"{}", b"[]", b'{"a": 1', b"\xff\xfe\xfa", b"\xc3("]),
    )


def with_extras(base: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """``base`` with some keys dropped and random keys added."""
    keys = sorted(base)
    return st.tuples(
        st.lists(st.sampled_from(keys), unique=True) if keys else st.just([]),
        st.dictionaries(st.text(max_size=10), JSON, max_size=3),
    ).map(
        lambda drop_add: {**{k: v for k, v in base.items() if k not in drop_add[0]}, **drop_add[1]}
    )


# --- Zendesk ----------------------------------------------------------------------------------

ZENDESK_HEADERS = [
    "X-Zendesk-Webhook-Signature",
    "X-Zendesk-Webhook-Signature-Timestamp",
    "X-Zendesk-Webhook-Invocation-Id",
    "X-Zendesk-Webhook-Id",
    "Content-Type",
]
TICKET_IDS = st.one_of(st.integers(), ODD_INTEGERS, ODD_TEXT, st.text(max_size=12), JSON)


@st.composite
def zendesk_body(draw: st.DrawFn) -> bytes:
    shape = draw(st.sampled_from(["trigger", "event", "raw"]))
    if shape == "raw":
        return draw(raw_bodies())
    if shape == "trigger":
        body = {"ticket_id": draw(TICKET_IDS), "updated_at": draw(INSTANTS)}
    else:
        detail = draw(with_extras({"id": draw(TICKET_IDS), "status": draw(SCALARS)}))
        body = {
            "type": draw(
                st.sampled_from(
                    ["zen:event-type:ticket.priority_changed", "zen:event-type:user.created", ""]
                )
                | st.text(max_size=40)
            ),
            "id": draw(SCALARS),
            "subject": draw(
                st.sampled_from(["zen:ticket:", "zen:ticket:42", "zen:ticket:²"]) | SCALARS
            ),
            "detail": draw(st.sampled_from([detail, {}]) | JSON),
        }
    return encoded(draw(with_extras(body)))


@st.composite
def garbage_headers(draw: st.DrawFn, names: list[str]) -> dict[str, str]:
    chosen = draw(st.lists(st.sampled_from(names), unique=True))
    headers = {name: draw(HEADER_TEXT) for name in chosen}
    extra = draw(st.dictionaries(st.from_regex(r"\AX-[A-Za-z-]{1,12}\Z"), HEADER_TEXT, max_size=2))
    return {**extra, **headers}


@st.composite
def zendesk_request(draw: st.DrawFn) -> tuple[bool, dict[str, str], bytes]:
    signed = draw(st.integers(0, 3)) > 0
    body = draw(zendesk_body())
    if not signed:
        return False, draw(garbage_headers(ZENDESK_HEADERS)), body
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    headers = {
        "Content-Type": draw(st.sampled_from(["application/json", "text/plain", ""])),
        "X-Zendesk-Webhook-Signature": zendesk_sign(ZENDESK_SECRET, stamp, body),
        "X-Zendesk-Webhook-Signature-Timestamp": stamp,
    }
    invocation = draw(st.none() | HEADER_TEXT)
    if invocation is not None:
        headers["X-Zendesk-Webhook-Invocation-Id"] = invocation
    return True, headers, body


@CASES
@given(request=zendesk_request())
def test_the_zendesk_webhook_never_fails_on_any_request(
    target: Target, request: tuple[bool, dict[str, str], bytes]
) -> None:
    signed, headers, body = request
    response = target.send("/webhooks/zendesk", headers, body)
    if not signed:
        assert response.status_code == 401, response.text
    else:
        assert response.status_code in (200, 202, 400, 413), response.text
    if response.status_code >= 400:
        assert response.json()["error"]


# --- Jira -------------------------------------------------------------------------------------

JIRA_HEADERS = ["X-Hub-Signature", "X-Atlassian-Webhook-Identifier", "Content-Type"]
EVENTS = st.sampled_from(
    [
        "jira:issue_created",
        "jira:issue_updated",
        "comment_created",
        "comment_updated",
        "jira:issue_deleted",
        "worklog_created",
        "jira:version_created",
        " ",
        "",
    ]
) | st.text(max_size=30)


@st.composite
def jira_body(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 4)) == 0:
        return draw(raw_bodies())
    issue = draw(with_extras({"id": draw(TICKET_IDS), "key": draw(SCALARS), "fields": draw(JSON)}))
    body = {
        "webhookEvent": draw(EVENTS | SCALARS),
        "timestamp": draw(st.integers() | ODD_INTEGERS | SCALARS),
        "issue": draw(st.sampled_from([issue]) | JSON),
        "user": draw(st.just({"accountId": AGENT}) | JSON),
        "comment": draw(st.none() | JSON | st.just({"author": {"accountId": draw(SCALARS)}})),
        "changelog": draw(
            st.none()
            | JSON
            | st.lists(st.dictionaries(st.sampled_from(["field", "to", "toString"]), SCALARS)).map(
                lambda items: {"id": "1", "items": items}
            )
        ),
    }
    return encoded(draw(with_extras(body)))


@st.composite
def jira_request(draw: st.DrawFn) -> tuple[bool, dict[str, str], bytes]:
    signed = draw(st.integers(0, 3)) > 0
    body = draw(jira_body())
    if not signed:
        return False, draw(garbage_headers(JIRA_HEADERS)), body
    digest = hmac.new(JIRA_SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", "X-Hub-Signature": f"sha256={digest}"}
    identifier = draw(st.none() | HEADER_TEXT)
    if identifier is not None:
        headers["X-Atlassian-Webhook-Identifier"] = identifier
    return True, headers, body


@CASES
@given(request=jira_request())
def test_the_jira_webhook_never_fails_on_any_request(
    target: Target, request: tuple[bool, dict[str, str], bytes]
) -> None:
    signed, headers, body = request
    response = target.send("/webhooks/jira", headers, body)
    if not signed:
        assert response.status_code == 401, response.text
    elif response.status_code == 401:  # signed, but the body's own timestamp is not recent
        assert "jira.webhook_max_age_seconds" in response.json()["error"], response.text
    else:
        assert response.status_code in (200, 202, 400, 413), response.text
    if response.status_code >= 400:
        assert response.json()["error"]


# --- Slack ------------------------------------------------------------------------------------

SLACK_HEADERS = ["X-Slack-Signature", "X-Slack-Request-Timestamp", "Content-Type"]
RESPONSE_URL = "RESPONSE-URL-OF-THE-FAKE"
"""Replaced by the fake Slack's ``response_url`` before signing: a command's listener answers
there at once (without one, or with an address that does not answer, Bolt waits for the
acknowledgement for 3 s and a run of 5,000 cases takes far too long)."""
RESPONSE_URLS = st.just(RESPONSE_URL)
INTERACTIONS = st.sampled_from(
    [
        "block_actions",
        "view_submission",
        "view_closed",
        "shortcut",
        "message_action",
        "block_suggestion",
        "interactive_message",
    ]
) | st.text(max_size=20)
ACTION_IDS = st.sampled_from(
    ["sla_reclassify", "sla_snooze_1h", "sla_snooze_4h", "sla_open", "value"]
) | st.text(max_size=20)
CALLBACKS = st.sampled_from(
    ["sla_reclassify_modal", "sla_snooze_modal", "sla_notice_modal"]
) | st.text(max_size=20)


@st.composite
def slack_form(draw: st.DrawFn) -> str:
    """A slash command, or an interaction's ``payload``, with parts wrong or missing."""
    if draw(st.booleans()):
        fields = {
            "command": draw(st.sampled_from(["/sla", "/other", ""]) | st.text(max_size=10)),
            "text": draw(
                st.sampled_from(["", "help", "ZD-1", "explain ZD-1", "reclassify ZD-1 P2 x"])
                | st.text(max_size=60)
            ),
            "user_id": draw(st.sampled_from([AGENT, "", "U0NOBODY"]) | st.text(max_size=12)),
            "team_id": draw(st.sampled_from(["T0FAKE", ""]) | st.text(max_size=8)),
            "channel_id": draw(st.sampled_from(["C0SUPPORT", ""]) | st.text(max_size=8)),
            "response_url": draw(RESPONSE_URLS),
            "trigger_id": draw(st.text(max_size=12)),
        }
        kept = draw(with_extras(fields))
        kept["response_url"] = RESPONSE_URL  # never dropped (see RESPONSE_URL)
        return urlencode({str(k): str(v) for k, v in kept.items()})
    payload: Any = {
        "type": draw(INTERACTIONS),
        "user": draw(st.just({"id": AGENT, "team_id": "T0FAKE"}) | JSON),
        "team": draw(st.just({"id": "T0FAKE"}) | JSON),
        "trigger_id": draw(st.text(max_size=12)),
        "response_url": draw(RESPONSE_URLS),
        "actions": draw(
            st.lists(
                with_extras(
                    {"action_id": draw(ACTION_IDS), "value": draw(SCALARS), "block_id": "b"}
                ),
                max_size=2,
            )
            | JSON
        ),
        "view": draw(
            with_extras(
                {
                    "id": "V0FUZZ",
                    "callback_id": draw(CALLBACKS),
                    "private_metadata": draw(
                        st.sampled_from(['{"ref": "zendesk:1"}', "{", "[]"]) | st.text(max_size=30)
                    ),
                    "state": draw(
                        st.just({"values": {"priority": {"value": {"selected_option": None}}}})
                        | JSON
                    ),
                }
            )
            | JSON
        ),
        "container": draw(JSON),
    }
    payload = draw(with_extras(payload))
    if draw(st.integers(0, 5)) == 0:
        text = draw(st.sampled_from(["{", "[]", "null", "1"]) | st.text(max_size=40))
    elif draw(st.integers(0, 20)) == 0:
        text = deep_text(draw(st.integers(500, 50_000)))
    else:
        text = json.dumps(payload)
    return urlencode({"payload": text})


def deep_text(depth: int) -> str:
    return "[" * depth + "]" * depth


@st.composite
def slack_json(draw: st.DrawFn) -> str:
    """An Events API delivery: URL verification, an event callback, or neither."""
    event = draw(
        with_extras(
            {
                "type": draw(
                    st.sampled_from(["app_home_opened", "message", "app_mention"])
                    | st.text(max_size=20)
                ),
                "user": draw(st.sampled_from([AGENT, ""]) | SCALARS),
                "tab": draw(st.sampled_from(["home", "messages"]) | SCALARS),
            }
        )
    )
    body = {
        "type": draw(
            st.sampled_from(["url_verification", "event_callback", "app_rate_limited"]) | SCALARS
        ),
        "challenge": draw(SCALARS),
        "team_id": draw(st.sampled_from(["T0FAKE"]) | SCALARS),
        "api_app_id": "A0SLABOT",
        "event": draw(st.just(event) | JSON),
        "event_id": draw(SCALARS),
        "event_time": draw(st.integers() | SCALARS),
    }
    return json.dumps(draw(with_extras(body)))


@st.composite
def slack_request(draw: st.DrawFn) -> tuple[bool, dict[str, str], bytes]:
    """(signed?, headers, body); signed ones are signed in the test, once the fake's
    ``response_url`` is in the body."""
    signed = draw(st.integers(0, 3)) > 0
    kind = draw(st.sampled_from(["form", "json", "raw"]))
    if kind == "form":
        body = draw(slack_form()).encode()
        content_type = "application/x-www-form-urlencoded"
    elif kind == "json":
        body = draw(slack_json()).encode()
        content_type = "application/json"
    else:
        body = draw(raw_bodies())
        content_type = draw(
            st.sampled_from(["application/json", "application/x-www-form-urlencoded", "text/plain"])
        )
    headers = {"Content-Type": content_type}
    if not signed:
        headers.update(draw(garbage_headers(SLACK_HEADERS)))
    return signed, headers, body


def slack_signed(headers: dict[str, str], body: bytes) -> dict[str, str]:
    timestamp = str(int(time.time()))
    basestring = b"v0:" + timestamp.encode() + b":" + body
    digest = hmac.new(SLACK_SIGNING_SECRET.encode(), basestring, hashlib.sha256).hexdigest()
    return {**headers, "X-Slack-Signature": f"v0={digest}", "X-Slack-Request-Timestamp": timestamp}


@CASES
@given(request=slack_request())
def test_slack_events_never_fail_on_any_request(
    target: Target, request: tuple[bool, dict[str, str], bytes]
) -> None:
    signed, headers, body = request
    respond_to = target.systems.slack.response_url("fuzz")
    body = body.replace(RESPONSE_URL.encode(), quote(respond_to, safe="").encode())
    if signed:
        headers = slack_signed(headers, body)
    response = target.send("/slack/events", headers, body)
    if not signed:
        assert response.status_code == 401, response.text


def test_the_fuzzed_deliveries_left_the_database_consistent(target: Target) -> None:
    """After the runs (this module's last test): no ticket was made out of a refused or an
    unreadable delivery, and a whole second pass of refused requests changes nothing."""
    before = target.database.digest()
    for path in ("/webhooks/zendesk", "/webhooks/jira", "/slack/events"):
        assert target.send(path, {"Content-Type": "application/json"}, b"{}").status_code == 401
    assert target.database.digest() == before
