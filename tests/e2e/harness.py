"""The end-to-end harness: the whole service on loopback against the fake Zendesk, Jira and Slack.

``RunningService`` wires the service exactly as ``slabot run`` does (``server.prepare``: the
settings from an environment and a config file, migrations, the runtime, the scheduler with
every job, the ASGI app), with the demo's clock (``DemoClock``: frozen, jumped forward by the
test, as ``slabot demo`` accelerates time), and serves it with uvicorn in a thread on an
ephemeral port. Everything then goes through public behaviour: signed HTTP requests to the
webhooks and ``/slack/events``, ``/metrics``, the dashboard, and the fakes' state and call
logs. The scheduler's own jobs (flushers every 0.2 s, the breach scan, the digest) do the
work; a test only moves the clock and waits for what the systems must show.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import uvicorn
from prometheus_client.parser import text_string_to_metric_families
from slack_sdk.signature import SignatureVerifier

from bot.compiled import Policy
from bot.engine import Decision, evaluate, iso_z, reclassify, threshold_instant
from bot.ticket import Reclassification, Ticket
from slabot.demo.environment import (
    AGENT,
    CONFIG,
    SLACK_SIGNING_SECRET,
    ZD_FIRST_RESPONSE,
    ZD_NEXT_UPDATE,
    ZD_RESTORATION,
    DemoSystems,
    write_config,
)
from slabot.demo.flow import DemoClock
from slabot.policy_files import bundled_policy_paths, load_policy
from slabot.service.logs import SecretMasker, configure_logging
from slabot.service.server import Service, http_options, prepare
from slabot.service.settings import load_settings

DASHBOARD_TOKEN = "e2e-dashboard-token-1f2e3d"
POLICIES: dict[str, Policy] = {
    policy.name: policy for policy in (load_policy(path) for path in bundled_policy_paths())
}
DUE_FIELDS = (ZD_FIRST_RESPONSE, ZD_RESTORATION, ZD_NEXT_UPDATE)
FAST_JOBS = {
    "scan_interval_seconds": 0.2,
    "flush_interval_seconds": 0.2,
    "drain_timeout_seconds": 5,
    "log_level": "DEBUG",
    "log_format": "json",
}
CLIENT_OPTIONS: dict[str, dict[str, Any]] = {
    "zendesk": {"timeout": 3.0, "job_poll_interval": 0.05},
    "jira": {"timeout": 3.0},
    "slack": {"timeout": 3},
    "zendesk_intake": {"retry_delay": 0.05},
    "jira_intake": {"retry_delay": 0.05},
}


def wait_until(condition: Callable[[], object], what: str, timeout: float = 20.0) -> None:
    """Wait until ``condition()`` is true; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except (OSError, KeyError):
            pass  # a fake or the service between states: ask again
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


@dataclass
class Reply:
    status: int
    text: str
    headers: Mapping[str, str]

    def json(self) -> Any:
        return json.loads(self.text)


def http(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 10.0,
) -> Reply:
    request = urllib.request.Request(url, data=body, headers=dict(headers or {}), method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Reply(int(response.status), response.read().decode(), dict(response.headers))
    except urllib.error.HTTPError as error:
        return Reply(int(error.code), error.read().decode(), dict(error.headers))


def metric_values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` as {(sample name, sorted labels): value}."""
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    return values


def signed_slack(
    body: str, content_type: str, *, secret: str = SLACK_SIGNING_SECRET
) -> dict[str, str]:
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    return {
        "Content-Type": content_type,
        "X-Slack-Signature": str(signature),
        "X-Slack-Request-Timestamp": timestamp,
    }


@dataclass
class RunningService:
    """The service of one test, serving on ``base``; ``clock`` is the service's clock."""

    systems: DemoSystems
    service: Service
    clock: DemoClock
    log: io.StringIO
    server: uvicorn.Server
    thread: threading.Thread
    base: str
    environ: dict[str, str]
    _saved_logging: tuple[list[logging.Handler], int] = field(default=([], 0))

    # --- requests ---

    def post(self, path: str, headers: Mapping[str, str], body: bytes) -> Reply:
        return http("POST", f"{self.base}{path}", headers=headers, body=body)

    def get(self, path: str, headers: Mapping[str, str] | None = None) -> Reply:
        return http("GET", f"{self.base}{path}", headers=headers)

    def zendesk_webhook(self, ticket_id: int) -> None:
        reply = self.post(
            "/webhooks/zendesk", *self.systems.zendesk.webhook({"ticket_id": str(ticket_id)})
        )
        assert reply.status == 202, reply.text

    def jira_webhook(self, delivery: tuple[dict[str, str], bytes]) -> None:
        reply = self.post("/webhooks/jira", *delivery)
        assert reply.status in (200, 202), reply.text

    def deliver_echoes(self) -> int:
        """Send the deliveries the helpdesks queued for slabot's own changes (their
        triggers and webhooks fire on every update, slabot's included)."""
        sent = 0
        for fake, path in (
            (self.systems.zendesk, "/webhooks/zendesk"),
            (self.systems.jira, "/webhooks/jira"),
        ):
            while fake.webhook_outbox:
                headers, body = fake.webhook_outbox.pop(0)
                reply = self.post(path, headers, body)
                assert reply.status in (200, 202), reply.text
                sent += 1
        return sent

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        reply = self.get("/metrics")
        assert reply.status == 200
        return metric_values(reply.text)

    def idle(self) -> bool:
        """No webhook queued, nothing owed that is due or leased (backing-off items aside)."""
        values = self.metrics()
        queued = sum(v for (name, _), v in values.items() if name == "slabot_webhook_queue_depth")
        pending = sum(v for (name, _), v in values.items() if name == "slabot_outbox_pending")
        return queued == 0 and pending == 0

    def settle(self, timeout: float = 30.0) -> None:
        """Deliver the echoes until none is left and the service has nothing more to do."""
        deadline = time.monotonic() + timeout
        quiet = 0
        while quiet < 3:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the service did not settle in {timeout:g}s: {self.metrics()}"
                )
            echoed = self.deliver_echoes()
            quiet = quiet + 1 if not echoed and self.idle() else 0
            time.sleep(0.3)  # more than a flush and a scan interval

    def advance_to(self, instant: datetime) -> None:
        """Move the service's clock (and the fakes' stamps) to ``instant``."""
        now = self.clock()
        assert instant >= now, f"the clock only runs forward ({now} -> {instant})"
        self.clock.advance(instant - now)
        self.systems.set_now(instant)

    def run_job(self, prefix: str) -> None:
        """Run a registered scheduler job now (an operator's "run now")."""
        jobs = [job for job in self.service.scheduler.get_jobs() if job.id.startswith(prefix)]
        assert jobs, f"no job {prefix}*: {[j.id for j in self.service.scheduler.get_jobs()]}"
        for job in jobs:
            job.modify(next_run_time=datetime.now(UTC))

    # --- Slack, as an agent ---

    def press(
        self, message: dict[str, Any], channel: str, ts: str, action_id: str, user: str = AGENT
    ) -> Reply:
        """Press a button of a posted message (a signed ``block_actions`` request)."""
        button = find_button(message["blocks"], action_id)
        slack = self.systems.slack
        payload = {
            "type": "block_actions",
            "user": {"id": user, "username": user.lower(), "team_id": slack.team_id},
            "api_app_id": "A0SLABOT",
            "token": "legacy-verification-token",
            "container": {"type": "message", "message_ts": ts, "channel_id": channel},
            "trigger_id": f"{int(time.time())}.42.press",
            "team": {"id": slack.team_id, "domain": "acme"},
            "channel": {"id": channel, "name": "support"},
            "message": {"ts": ts, "text": message.get("text"), "blocks": message["blocks"]},
            "response_url": slack.response_url("press"),
            "actions": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "block_id": button.get("block_id", "b1"),
                    "value": button.get("value"),
                    "text": button.get("text"),
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }
        body = urlencode({"payload": json.dumps(payload)})
        return self.post(
            "/slack/events", signed_slack(body, "application/x-www-form-urlencoded"), body.encode()
        )

    def submit(
        self, view: dict[str, Any], view_id: str, values: dict[str, str], user: str = AGENT
    ) -> Reply:
        """Submit a modal slabot opened, ``values`` by block id (a signed ``view_submission``)."""
        slack = self.systems.slack
        state: dict[str, Any] = {}
        for block in view["blocks"]:
            if block.get("type") != "input":
                continue
            block_id = block["block_id"]
            element = block["element"]
            value = values[block_id]
            if element["type"] == "static_select":
                option = next(o for o in element["options"] if o["value"] == value)
                state[block_id] = {
                    element["action_id"]: {"type": "static_select", "selected_option": option}
                }
            else:
                state[block_id] = {element["action_id"]: {"type": element["type"], "value": value}}
        payload = {
            "type": "view_submission",
            "team": {"id": slack.team_id, "domain": "acme"},
            "user": {"id": user, "username": user.lower(), "team_id": slack.team_id},
            "api_app_id": "A0SLABOT",
            "token": "legacy-verification-token",
            "trigger_id": f"{int(time.time())}.43.submit",
            "view": {
                "id": view_id,
                "team_id": slack.team_id,
                "type": "modal",
                "callback_id": view["callback_id"],
                "private_metadata": view.get("private_metadata", ""),
                "state": {"values": state},
                "hash": "h1",
            },
            "response_urls": [],
        }
        body = urlencode({"payload": json.dumps(payload)})
        return self.post(
            "/slack/events", signed_slack(body, "application/x-www-form-urlencoded"), body.encode()
        )

    # --- stopping ---

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.service.runtime.close()
        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in self._saved_logging[0]:
            root.addHandler(handler)
        root.setLevel(self._saved_logging[1])


def find_button(blocks: Any, action_id: str) -> dict[str, Any]:
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
    for block in blocks or []:
        for element in block.get("elements") or []:
            if isinstance(element, dict) and element.get("action_id") == action_id:
                return {**element, "block_id": block.get("block_id", "b1")}
        accessory = block.get("accessory")
        if isinstance(accessory, dict) and accessory.get("action_id") == action_id:
            return {**accessory, "block_id": block.get("block_id", "b1")}
    raise AssertionError(f"no button {action_id} in the message")


def texts(blocks: Any) -> str:
    """Every text of a Block Kit payload, joined."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "text" and isinstance(item, str):
                    found.append(item)
                else:
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(json.loads(blocks) if isinstance(blocks, str) else blocks)
    return "\n".join(found)


def start_service(
    systems: DemoSystems,
    folder: Path,
    database_url: str,
    start: datetime,
    *,
    service: Mapping[str, Any] | None = None,
    extra_environ: Mapping[str, str] | None = None,
) -> RunningService:
    """Wire the service as ``slabot run`` does and serve it on an ephemeral loopback port."""
    config = write_config(folder / "slabot.yaml", {**FAST_JOBS, **(service or {})})
    environ = systems.environ(
        database_url, config, {"SLABOT_DASHBOARD_TOKEN": DASHBOARD_TOKEN, **(extra_environ or {})}
    )
    systems.set_now(start)
    systems.zendesk.trigger_on_update = True
    settings = load_settings(environ)
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    log = io.StringIO()
    # As ``slabot run`` configures it, at DEBUG so that the most is logged.
    configure_logging(SecretMasker(settings.secrets()), level="DEBUG", form="json", stream=log)
    clock = DemoClock(start)
    prepared = prepare(settings, clock, client_options=CLIENT_OPTIONS)
    config_ = uvicorn.Config(
        prepared.app,
        host="127.0.0.1",
        port=0,
        log_config=None,
        access_log=True,
        lifespan="on",
        **http_options(settings.service),
    )
    server = uvicorn.Server(config_)
    thread = threading.Thread(target=server.run, name="slabot-e2e-http", daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), "uvicorn to start")
    if not server.started:
        raise AssertionError(f"the service did not start:\n{log.getvalue()}")
    port = int(server.servers[0].sockets[0].getsockname()[1])
    return RunningService(
        systems=systems,
        service=prepared,
        clock=clock,
        log=log,
        server=server,
        thread=thread,
        base=f"http://127.0.0.1:{port}",
        environ=environ,
        _saved_logging=saved,
    )


def slack_messages(systems: DemoSystems) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Every message slabot posted (channel, ts, message with ``history``), oldest first."""
    slack = systems.slack
    with slack._lock:  # a consistent copy while the fake serves
        items = sorted(slack.messages.items(), key=lambda item: item[0][1])
        copies = [
            (channel, ts, json.loads(json.dumps(message))) for (channel, ts), message in items
        ]
    yield from copies


def seconds(delta: timedelta) -> float:
    return delta.total_seconds()


# --- what the policy requires, computed with the engine --------------------------------------


@dataclass
class Expected:
    """A ticket as the helpdesk holds it, and the engine's decisions about it."""

    policy_name: str
    ticket: Ticket

    @property
    def policy(self) -> Policy:
        return POLICIES[self.policy_name]

    def at(self, now: datetime) -> Decision:
        return evaluate(self.ticket, self.policy, now)

    def threshold(self, target: str, fraction: float, now: datetime) -> datetime:
        instant = threshold_instant(self.ticket, self.policy, self.at(now), target, fraction, now)
        assert instant is not None, f"{target} has no {fraction:.0%} instant at {now}"
        return instant

    def reclassified(self, priority: str, actor: str, reason: str, now: datetime) -> Decision:
        """The agent's reclassification, checked by the engine, then kept on the ticket."""
        reclassify(self.ticket, self.policy, now, priority, actor, reason)
        change = Reclassification(priority=priority, actor=actor, reason=reason, at=now)
        self.ticket = replace(self.ticket, reclassification=change)
        return self.at(now)

    def update(self, **changes: Any) -> None:
        self.ticket = replace(self.ticket, **changes)


def zendesk_shows(decision: Decision) -> dict[str, Any]:
    """What Zendesk must show for ``decision`` (demo config: priorities and due fields)."""
    priorities = CONFIG["zendesk"]["priorities"]
    return {
        "priority": priorities[decision.priority],
        "tags": sorted(decision.tags),
        "due": {
            ZD_FIRST_RESPONSE: iso_z(decision.targets["first_response"].due),
            ZD_RESTORATION: iso_z(decision.targets["restoration"].due),
            ZD_NEXT_UPDATE: iso_z(decision.targets["next_update"].due),
        },
    }


def zendesk_shown(systems: DemoSystems, ticket_id: int) -> dict[str, Any]:
    shown = systems.zendesk.shown(ticket_id)
    fields = shown["fields"]
    return {
        "priority": shown["priority"],
        "tags": [tag for tag in shown["tags"] if tag.startswith("sla_")],
        "due": {field_id: fields.get(field_id) for field_id in DUE_FIELDS},
    }


def jira_shows(decision: Decision, zone: str) -> dict[str, Any]:
    """What Jira must show (demo config: priorities, ``due_date`` of the first response in
    the zone of the calendar it is counted on)."""
    due = decision.targets["first_response"].due
    return {
        "priority": CONFIG["jira"]["priorities"][decision.priority],
        "labels": sorted(decision.tags),
        "duedate": None if due is None else due.astimezone(ZoneInfo(zone)).date().isoformat(),
    }


def jira_shown(systems: DemoSystems, number: int) -> dict[str, Any]:
    shown = systems.jira.shown(number)
    return {
        "priority": shown["priority"],
        "labels": [label for label in shown["labels"] if label.startswith("sla_")],
        "duedate": shown["duedate"],
    }


def bot_audits(systems: DemoSystems, ticket_id: int) -> list[dict[str, Any]]:
    """slabot's own changes to a Zendesk ticket, oldest first."""
    zendesk = systems.zendesk
    return [a for a in zendesk.audits.get(ticket_id, []) if a["author_id"] == zendesk.bot_user_id]


def internal_notes(systems: DemoSystems, ticket_id: int) -> list[str]:
    return [
        str(event.get("body"))
        for audit in bot_audits(systems, ticket_id)
        for event in audit["events"]
        if event["type"] == "Comment" and not event.get("public")
    ]
