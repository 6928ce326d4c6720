"""Security: only what the sender signed with the right secret, recently, gets in.

Every endpoint that takes requests from outside refuses with 401, and commits nothing to the
database, a request whose body was changed after signing, one signed with another secret,
one signed too long ago (Zendesk and Slack sign a timestamp; Jira signs only the body, so
its own ``timestamp`` must be recent), and one missing any of the signature headers. A
signed delivery replayed in time, under its own id or a fresh one, is answered 200
``duplicate`` and changes nothing. The dashboard refuses anyone without its token (or its
basic-auth password) when one is configured, never takes it from the address, and without
either answers loopback clients only (more through a real ``slabot run``:
tests/service/test_dashboard_security.py). Also here: the inputs the fuzzing in
test_proof_fuzz.py found answered 500, each pinned as a plain example.

That no secret reaches the logs is checked on whole runs: the end-to-end flows
(tests/e2e/test_e2e_flows.py) and a real ``slabot run`` through faults
(tests/proof/test_proof_faults.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from starlette.testclient import TestClient

from connectors.zendesk.webhook import sign as zendesk_sign
from slabot.demo.environment import (
    JIRA_SECRET,
    SLACK_SIGNING_SECRET,
    ZENDESK_SECRET,
)
from tests.proof.service_support import START, Target, serve_in_process

Signer = Callable[..., tuple[dict[str, str], bytes]]


def zendesk(
    body: bytes = b'{"ticket_id": "4242"}',
    *,
    secret: str = ZENDESK_SECRET,
    age: timedelta = timedelta(0),
    signed_body: bytes | None = None,
) -> tuple[dict[str, str], bytes]:
    stamp = (datetime.now(UTC) - age).strftime("%Y-%m-%dT%H:%M:%SZ")
    signature = zendesk_sign(secret, stamp, body if signed_body is None else signed_body)
    return {
        "Content-Type": "application/json",
        "X-Zendesk-Webhook-Signature": signature,
        "X-Zendesk-Webhook-Signature-Timestamp": stamp,
        "X-Zendesk-Webhook-Invocation-Id": f"inv-{time.monotonic_ns()}",
    }, body


def jira(
    body: bytes = b'{"webhookEvent": "jira:issue_updated", "issue": {"id": "10042"}}',
    *,
    secret: str = JIRA_SECRET,
    signed_body: bytes | None = None,
    identifier: str | None = None,
) -> tuple[dict[str, str], bytes]:
    digest = hmac.new(
        secret.encode(), body if signed_body is None else signed_body, hashlib.sha256
    ).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-Hub-Signature": f"sha256={digest}",
        "X-Atlassian-Webhook-Identifier": identifier or f"id-{time.monotonic_ns()}",
    }, body


URL_VERIFICATION = b'{"type": "url_verification", "challenge": "c42", "token": "t"}'
"""Slack's handshake: Bolt answers it itself (a command would run a listener)."""


def slack(
    body: bytes = URL_VERIFICATION,
    *,
    secret: str = SLACK_SIGNING_SECRET,
    age: timedelta = timedelta(0),
    signed_body: bytes | None = None,
    content_type: str = "application/json",
) -> tuple[dict[str, str], bytes]:
    stamp = str(int(time.time() - age.total_seconds()))
    message = b"v0:" + stamp.encode() + b":" + (body if signed_body is None else signed_body)
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return {
        "Content-Type": content_type,
        "X-Slack-Signature": f"v0={digest}",
        "X-Slack-Request-Timestamp": stamp,
    }, body


ENDPOINTS: dict[str, tuple[str, Signer, list[str]]] = {
    "zendesk": (
        "/webhooks/zendesk",
        zendesk,
        ["X-Zendesk-Webhook-Signature", "X-Zendesk-Webhook-Signature-Timestamp"],
    ),
    "jira": ("/webhooks/jira", jira, ["X-Hub-Signature"]),
    "slack": ("/slack/events", slack, ["X-Slack-Signature", "X-Slack-Request-Timestamp"]),
}


def refused(target: Target, path: str, headers: dict[str, str], body: bytes) -> None:
    response = target.send(path, headers, body)  # commits nothing when refused (see send)
    assert response.status_code == 401, (response.status_code, response.text)
    assert response.json()["error"]


@pytest.mark.parametrize("name", ENDPOINTS)
def test_a_correctly_signed_request_gets_in(target: Target, name: str) -> None:
    path, sign, _ = ENDPOINTS[name]
    response = target.send(path, *sign())
    assert response.status_code in (200, 202), response.text


@pytest.mark.parametrize("name", ENDPOINTS)
def test_a_body_changed_after_signing_is_refused(target: Target, name: str) -> None:
    path, sign, _ = ENDPOINTS[name]
    headers, body = sign()
    tampered = body.replace(b"42", b"43")
    assert tampered != body
    refused(target, path, headers, tampered)
    # The same, built the other way: the signature covers a body other than the one sent.
    refused(target, path, *sign(tampered, signed_body=body))


@pytest.mark.parametrize("name", ENDPOINTS)
def test_a_request_signed_with_another_secret_is_refused(target: Target, name: str) -> None:
    path, sign, _ = ENDPOINTS[name]
    refused(target, path, *sign(secret="not-the-secret"))
    refused(target, path, *sign(secret=""))


@pytest.mark.parametrize("name", ["zendesk", "slack"])
@pytest.mark.parametrize("age", [timedelta(minutes=6), timedelta(hours=-1), timedelta(days=400)])
def test_a_request_signed_too_long_ago_or_in_the_future_is_refused(
    target: Target, name: str, age: timedelta
) -> None:
    path, sign, _ = ENDPOINTS[name]
    refused(target, path, *sign(age=age))
    assert target.send(path, *sign(age=timedelta(minutes=4))).status_code in (200, 202)


def test_a_jira_delivery_sent_again_under_its_id_is_dropped(target: Target) -> None:
    path, _, _ = ENDPOINTS["jira"]
    body = json.dumps(
        {"webhookEvent": "jira:issue_updated", "issue": {"id": "10044"}, "nonce": "retried"}
    ).encode()
    delivery = jira(body, identifier="replayed-delivery")
    assert target.send(path, *delivery).status_code == 202
    before = target.database.state()
    again = target.send(path, *delivery)
    assert (again.status_code, again.json()["status"]) == (200, "duplicate")
    assert target.database.state() == before


@pytest.mark.parametrize(
    "age", [timedelta(days=30), timedelta(hours=2), timedelta(hours=-2), timedelta(days=-400)]
)
def test_a_jira_body_whose_own_timestamp_is_too_old_or_ahead_is_refused(
    target: Target, age: timedelta
) -> None:
    """The service's clock is ``START``; the window is jira.webhook_max_age_seconds (1 h)."""
    path, _, _ = ENDPOINTS["jira"]

    def body(at: datetime) -> bytes:
        return json.dumps(
            {
                "webhookEvent": "jira:issue_updated",
                "timestamp": int(at.timestamp() * 1000),
                "issue": {"id": "10042"},
                "nonce": time.monotonic_ns(),  # a body of its own each time
            }
        ).encode()

    headers, stale = jira(body(START - age))
    response = target.send(path, headers, stale)
    assert response.status_code == 401
    assert "timestamp" in response.json()["error"]
    assert "jira.webhook_max_age_seconds" in response.json()["error"]
    recent = target.send(path, *jira(body(START - timedelta(minutes=50))))
    assert recent.status_code == 202, recent.text


REPLAYABLE = {
    "zendesk": ("X-Zendesk-Webhook-Invocation-Id", {"ticket_id": "4343"}),
    "jira": (
        "X-Atlassian-Webhook-Identifier",
        {"webhookEvent": "jira:issue_updated", "issue": {"id": "10043"}},
    ),
}


@pytest.mark.parametrize("name", REPLAYABLE)
def test_a_signed_delivery_replayed_under_fresh_ids_is_a_duplicate(
    target: Target, name: str
) -> None:
    path, sign, _ = ENDPOINTS[name]
    id_header, payload = REPLAYABLE[name]
    # A body of its own (the module's service has seen the others).
    headers, body = sign(json.dumps({**payload, "nonce": time.monotonic_ns()}).encode())
    assert target.send(path, headers, body).status_code == 202
    before = target.database.state()
    for n in range(20):
        again = target.send(path, {**headers, id_header: f"fresh-{n}"}, body)
        assert (again.status_code, again.json()["status"]) == (200, "duplicate")
    assert target.database.state() == before


@pytest.mark.parametrize("name", ENDPOINTS)
def test_a_request_missing_a_signature_header_is_refused(target: Target, name: str) -> None:
    path, sign, names = ENDPOINTS[name]
    headers, body = sign()
    for missing in names:
        refused(target, path, {k: v for k, v in headers.items() if k != missing}, body)
        refused(target, path, {**headers, missing: ""}, body)
    refused(target, path, {"Content-Type": headers["Content-Type"]}, body)


@pytest.mark.parametrize("name", ENDPOINTS)
def test_malformed_signature_headers_are_refused_not_failed_on(target: Target, name: str) -> None:
    path, sign, names = ENDPOINTS[name]
    headers, body = sign()
    for header in names:
        for value in ("garbage", "v0=", "sha256=zz", "9" * 40, "-1", "1e9", "0x10", " "):
            refused(target, path, {**headers, header: value}, body)


# --- what the fuzzing found -------------------------------------------------------------------

DEEP = b"[" * 50_000 + b"]" * 50_000


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("zendesk", DEEP),
        ("zendesk", b'{"ticket_id": "\xc2\xb2"}'),  # "²".isdigit(), but int("²") fails
        ("zendesk", b'{"ticket_id": "' + b"9" * 5000 + b'"}'),  # past int()'s digit limit
        ("zendesk", b'{"ticket_id": 99999999999999999999999}'),
        ("jira", DEEP),
        ("jira", b'{"webhookEvent": "jira:issue_created", "timestamp": -62135596800001}'),
        ("jira", b'{"webhookEvent": "jira:issue_created", "timestamp": 100000000000000000000}'),
        ("slack", b"{"),
        ("slack", b"payload=%7B"),
        ("slack", b"\xff\xfe"),
        ("slack", b"payload=" + b"%5B" * 3000 + b"%5D" * 3000),
        ("slack", b'{"type": "url_verification", "event": null}'),
        ("slack", b'{"type": "event_callback", "event": "app_home_opened"}'),
        ("slack", b"[1]"),
        ("slack", b"payload=" + json.dumps({"type": "block_actions", "actions": []}).encode()),
        ("slack", b"payload=" + json.dumps({"type": "block_actions", "container": None}).encode()),
        ("slack", b"payload=" + json.dumps({"type": "view_submission", "view": 3}).encode()),
        (
            "slack",
            b"payload="
            + json.dumps({"type": "view_submission", "view": {"callback_id": "x"}}).encode(),
        ),
    ],
)
def test_signed_bodies_that_used_to_answer_500_get_a_400(
    target: Target, name: str, body: bytes
) -> None:
    path, sign, _ = ENDPOINTS[name]
    headers, body = sign(body)
    if not body.startswith((b"{", b"[")):
        headers["Content-Type"] = "application/x-www-form-urlencoded"  # not signed
    response = target.send(path, headers, body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]


def test_unsigned_bodies_bolt_could_not_parse_get_a_401(target: Target) -> None:
    for body in (b"{", b"payload=%7B", b"\xff\xfe", b"[[[[[[", b'{"event": null}'):
        refused(target, "/slack/events", {"Content-Type": "application/json"}, body)
    # A timestamp that is not a number: Bolt's verifier raised on it.
    headers, body = slack()
    refused(target, "/slack/events", {**headers, "X-Slack-Request-Timestamp": "soon"}, body)


# --- the dashboard ----------------------------------------------------------------------------

TOKEN = "dashboard-token-3b9e"
PASSWORD = "dashboard-password-51c0"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    with serve_in_process(
        tmp_path_factory.mktemp("guarded"),
        SLABOT_DASHBOARD_TOKEN=TOKEN,
        SLABOT_DASHBOARD_USER="ops",
        SLABOT_DASHBOARD_PASSWORD=PASSWORD,
    ) as served:
        yield served


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def from_address(target: Target, address: str) -> TestClient:
    """The same app seen from another client address (wrong guesses are throttled per
    address: each case here gets its own, so every answer is the check's, not the throttle's)."""
    return TestClient(target.client.app, client=(address, 40000))


@pytest.mark.parametrize("page", ["/", "/tickets/zendesk/1", "/?source=zendesk"])
def test_the_dashboard_refuses_requests_without_its_token(guarded: Target, page: str) -> None:
    for number, headers in enumerate(
        (
            {},
            {"Authorization": "Bearer"},
            {"Authorization": "Bearer not-the-token"},
            {"Authorization": f"Bearer {TOKEN}x"},
            {"Authorization": f"Token {TOKEN}"},
            {"Authorization": basic("ops", "wrong")},
            {"Authorization": basic("someone", PASSWORD)},
            {"Authorization": "Basic !!!not-base64"},
        )
    ):
        client = from_address(guarded, f"192.0.2.{number + 1}")
        response = client.get(page, headers=headers)
        assert response.status_code == 401, (headers, response.status_code)
        assert TOKEN not in response.text and PASSWORD not in response.text
    for token in ("wrong", TOKEN):  # never taken from the address, not even the right one
        response = guarded.client.get(f"{page}{'&' if '?' in page else '?'}token={token}")
        assert response.status_code == 401


def test_the_dashboard_lets_in_its_token_or_its_password(guarded: Target) -> None:
    client = guarded.client
    assert client.get("/", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert client.get("/", headers={"Authorization": basic("ops", PASSWORD)}).status_code == 200
    # Health and metrics stay open for probes and scrapers; they show no secret.
    for probe in ("/healthz", "/readyz", "/metrics"):
        response = client.get(probe)
        assert response.status_code == 200
        assert TOKEN not in response.text and PASSWORD not in response.text


def test_an_open_dashboard_needs_no_token_on_loopback_only(target: Target) -> None:
    assert from_address(target, "127.0.0.1").get("/").status_code == 200
    assert from_address(target, "::1").get("/").status_code == 200
    assert from_address(target, "192.0.2.10").get("/").status_code == 403
