"""``slabot demo``: the whole flow on a laptop, with no accounts.

It starts the service on SQLite (a temporary file unless ``--database`` names one) with the
fake Zendesk, Jira and Slack on loopback, then plays a support morning on an accelerated
clock, through the real clients and the real HTTP endpoints:

1. customers open tickets in Zendesk and Jira; each helpdesk sends its signed webhook, and
   the routing rules choose the policy: Jira's under ``cloudtalk``, Zendesk's Zmanda brand
   (the bundled sample's zmanda tickets) under ``zmanda``, its Zoom brand under ``zoom``;
2. slabot decides priorities and due dates and writes them back (what each helpdesk
   received is printed);
3. the clock runs to 75% of a target: Slack gets a nudge;
4. a lead reclassifies a ticket with ``/sla reclassify`` in Slack: Zendesk gets the new
   priority and an internal note;
5. the clock runs past a due instant: Slack gets the breach notice;
6. the morning digest goes to ``#support``.

Then it serves the dashboard on http://127.0.0.1:8000 with the scheduler running (the clock
at a minute per second) until Ctrl-C; ``--once`` exits after step 6 instead, with status 0
when every system received what the flow expects.
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlencode

import uvicorn
from slack_sdk.signature import SignatureVerifier

from bot.ticket import parse_instant
from slabot.demo.environment import (
    AGENT,
    JIRA_ENVIRONMENT,
    JIRA_PLAN,
    SLACK_SIGNING_SECRET,
    ZD_ENVIRONMENT,
    ZD_FIRST_RESPONSE,
    ZD_IMPACT,
    ZD_NEXT_UPDATE,
    ZD_RESTORATION,
    ZD_URGENCY,
    ZMANDA_BRAND,
    ZOOM_BRAND,
    DemoSystems,
    start_systems,
    write_config,
)
from slabot.service import jobs
from slabot.service.app import create_app
from slabot.service.logs import SecretMasker, configure_logging
from slabot.service.runtime import Runtime, build_runtime
from slabot.service.scheduler import make_scheduler, register_jobs
from slabot.service.server import http_options
from slabot.service.settings import load_settings
from slabot.store.migrate import upgrade

START = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)
"""Monday 16 November 2026, 09:00 UTC (10:00 in Bratislava, 01:00 in Los Angeles)."""
SAMPLE_NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
"""The instant the bundled sample is written for (its tickets are moved to the demo's)."""
LIVE_RATE = 60.0
"""After the script: one minute of the service's clock per second."""
REQUESTER, ORGANIZATION, CUSTOMER = 501, 701, "5f0c0a5e1b2c3d0070a1c0c0"
FIELD_NAMES = {
    ZD_FIRST_RESPONSE: "first_response",
    ZD_RESTORATION: "restoration",
    ZD_NEXT_UPDATE: "next_update",
}
ZMANDA_REQUESTER, ZMANDA_FIRST = 502, 1101


class DemoClock:
    """The service's clock: frozen while the script jumps it, then running at ``rate``."""

    def __init__(self, start: datetime, rate: float = 0.0) -> None:
        self._lock = threading.Lock()
        self._base = start
        self._since = time.monotonic()
        self.rate = rate

    def __call__(self) -> datetime:
        with self._lock:
            elapsed = (time.monotonic() - self._since) * self.rate
            return self._base + timedelta(seconds=elapsed)

    def advance(self, delta: timedelta) -> datetime:
        now = self()
        with self._lock:
            self._base, self._since = now + delta, time.monotonic()
        return self._base

    def run_at(self, rate: float) -> None:
        now = self()
        with self._lock:
            self._base, self._since, self.rate = now, time.monotonic(), rate


@dataclass
class Printer:
    """Prints what each fake system received since the last look."""

    systems: DemoSystems
    out: IO[str]
    seen: dict[str, int] = field(default_factory=lambda: {"zendesk": 0, "jira": 0, "slack": 0})
    received: dict[str, list[str]] = field(
        default_factory=lambda: {"zendesk": [], "jira": [], "slack": []}
    )

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def step(self, title: str) -> None:
        self.say()
        self.say(f"== {title}")

    def show(self) -> None:
        for name, lines in (
            ("zendesk", self._zendesk()),
            ("jira", self._jira()),
            ("slack", self._slack()),
        ):
            for line in lines:
                self.received[name].append(line)
                self.say(f"  [{name}] {line}")

    def _new(self, name: str, calls: list[Any]) -> list[Any]:
        fresh = calls[self.seen[name] :]
        self.seen[name] = len(calls)
        return fresh

    def _zendesk(self) -> list[str]:
        lines = []
        for call in self._new("zendesk", list(self.systems.zendesk.calls)):
            if call.method not in ("PUT", "POST") or not isinstance(call.body, dict):
                continue
            updates = call.body.get("tickets") or [call.body.get("ticket") or {}]
            for update in updates:
                lines.append(f"ticket {update.get('id', '?')}: {_zendesk_change(update)}")
        return lines

    def _jira(self) -> list[str]:
        lines = []
        for call in self._new("jira", list(self.systems.jira.calls)):
            if call.method not in ("PUT", "POST") or not isinstance(call.body, dict):
                continue
            issue = call.path.split("/issue/")[-1].split("/")[0]
            key = self.systems.jira.issues.get(issue, {}).get("key", issue)
            if call.path.endswith("/comment"):
                lines.append(f"{key}: internal comment {_adf_text(call.body.get('body'))!r}")
            else:
                lines.append(f"{key}: {_jira_change(call.body)}")
        return lines

    def _slack(self) -> list[str]:
        lines = []
        for call in self._new("slack", list(self.systems.slack.calls)):
            if call.method in ("chat.postMessage", "chat.update") and call.status == 200:
                text = str(call.args.get("text") or "").replace("\n", " / ")
                verb = "message" if call.method == "chat.postMessage" else "update"
                lines.append(f"{verb} in {call.args.get('channel')}: {text[:160]}")
                if "digest" in text.lower():
                    lines.extend(f"  {line}" for line in _block_lines(call.args.get("blocks")))
        return lines


def _block_lines(blocks: Any, limit: int = 12) -> list[str]:
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    lines: list[str] = []
    for block in blocks or []:
        texts = [block.get("text")] if block.get("text") else block.get("elements") or []
        for text in texts:
            if isinstance(text, dict) and text.get("text"):
                lines.extend(str(text["text"]).splitlines())
    return [line[:150] for line in lines[:limit]]


def _zendesk_change(update: dict[str, Any]) -> str:
    parts = []
    if "priority" in update:
        parts.append(f"priority {update['priority']}")
    if update.get("additional_tags"):
        parts.append(f"tags +{','.join(update['additional_tags'])}")
    if update.get("remove_tags"):
        parts.append(f"tags -{','.join(update['remove_tags'])}")
    for custom in update.get("custom_fields") or []:
        name = FIELD_NAMES.get(custom.get("id"), str(custom.get("id")))
        parts.append(f"{name} due {custom.get('value')}")
    comment = update.get("comment")
    if isinstance(comment, dict):
        kind = "public reply" if comment.get("public") else "internal note"
        body = str(comment.get("body") or comment.get("html_body") or "")
        parts.append(f"{kind} {body.splitlines()[0][:120]!r}" if body else kind)
    return "; ".join(parts) or "no change"


def _jira_change(body: dict[str, Any]) -> str:
    parts = []
    fields = body.get("fields") or {}
    if "priority" in fields:
        parts.append(f"priority {(fields['priority'] or {}).get('name')}")
    if "duedate" in fields:
        parts.append(f"due date {fields['duedate']}")
    for name, value in fields.items():
        if name.startswith("customfield_"):
            parts.append(f"{name} {value}")
    for operation in (body.get("update") or {}).get("labels") or []:
        for verb, label in operation.items():
            parts.append(f"label {'+' if verb == 'add' else '-'}{label}")
    return "; ".join(parts) or "no change"


def _adf_text(document: Any) -> str:
    if isinstance(document, str):
        return document.splitlines()[0][:120]
    texts: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "text":
                texts.append(str(node.get("text") or ""))
            for child in node.get("content") or []:
                walk(child)

    walk(document)
    return " ".join(texts)[:120]


# --- the script ------------------------------------------------------------------------------


class Demo:
    """The service, the fakes and the script, in one process."""

    def __init__(self, out: IO[str], database: str | None, port: int) -> None:
        self.out = out
        self.port = port
        self.clock = DemoClock(START)
        self.systems = start_systems(START)
        self._temp = tempfile.TemporaryDirectory(prefix="slabot-demo-")
        folder = Path(self._temp.name)
        self.database = database or str(folder / "slabot-demo.db")
        config = write_config(
            folder / "slabot.yaml",
            {"scan_interval_seconds": 5, "flush_interval_seconds": 2, "drain_timeout_seconds": 5},
        )
        self.environ = self.systems.environ(f"sqlite:///{self.database}", config)
        settings = load_settings(self.environ)
        configure_logging(
            SecretMasker([*settings.secrets(), *self.systems.secrets()]),
            level="WARNING",
            form="console",
        )
        self.runtime: Runtime = build_runtime(
            settings,
            self.clock,
            client_options={
                "zendesk": {"timeout": 5.0, "job_poll_interval": 0.05},
                "jira": {"timeout": 5.0},
                "slack": {"timeout": 5},
            },
        )
        upgrade(self.runtime.engine)
        self.printer = Printer(self.systems, out)
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    # --- serving ---

    def serve(self) -> str:
        """Start the HTTP app on loopback in a thread; returns its base URL."""
        config = uvicorn.Config(
            create_app(self.runtime),
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            access_log=False,
            lifespan="on",
            **http_options(self.runtime.settings.service),
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="slabot-http", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise DemoError(
                    f"the service could not listen on 127.0.0.1:{self.port} (in use? pass "
                    "--port with another)"
                )
            time.sleep(0.02)
        sockets = self.server.servers[0].sockets
        self.port = int(sockets[0].getsockname()[1])
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(15)
        self.runtime.close()
        self.systems.stop()
        self._temp.cleanup()

    def post(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, str]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=body, headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status), response.read().decode()
        except urllib.error.HTTPError as error:
            return int(error.code), error.read().decode()

    # --- steps ---

    def run(self, once: bool) -> int:
        say = self.printer.say
        url = self.serve()
        systems = self.systems
        say(f"slabot demo: service on {url}; database {self.database}")
        say(
            f"fake Zendesk {systems.zendesk.url}, fake Jira {systems.jira.url}, "
            f"fake Slack {systems.slack.url}"
        )
        self.open_tickets()
        self.write_back()
        self.nudge()
        self.reclassify()
        self.breach()
        self.digest()
        problems = self.check()
        if problems:
            say()
            for problem in problems:
                say(f"demo check failed: {problem}")
            return 1
        say()
        say("== every system received what the policy requires")
        if once:
            return 0
        return self.live(url)

    def open_tickets(self) -> None:
        p = self.printer
        now = self.clock()
        p.step(f"{now:%a %d %b %H:%M} UTC: customers open tickets")
        self.systems.set_now(now)
        zendesk, jira = self.systems.zendesk, self.systems.jira
        zendesk.add_user(REQUESTER, "end-user", time_zone="Berlin", name="Greta Keller")
        zendesk.add_organization(
            ORGANIZATION,
            name="Initech GmbH",
            organization_fields={"support_plan": "premier", "country": "de", "time_zone": None},
        )
        for number, priority, environment, what, subject in (
            (
                1001,
                "urgent",
                "env_production",
                "P1 in production: the meeting service is down",
                "Meetings fail to start for everyone",
            ),
            (
                1002,
                "urgent",
                "env_staging",
                "P1 asked for a staging problem",
                "Staging: recordings missing",
            ),
            (
                1003,
                "normal",
                "env_production",
                "P3: a report exports slowly",
                "Usage report export takes minutes",
            ),
        ):
            zendesk.add_ticket(
                number,
                requester_id=REQUESTER,
                organization_id=ORGANIZATION,
                priority=priority,
                custom_fields={ZD_ENVIRONMENT: environment},
                subject=subject,
                brand_id=ZOOM_BRAND,
            )
            status, _ = self.post("/webhooks/zendesk", *zendesk.webhook({"ticket_id": str(number)}))
            p.say(f"  Zendesk #{number} ({what}, Zoom brand): webhook answered {status}")
        for number, sample in self.zmanda_samples(now):
            status, _ = self.post("/webhooks/zendesk", *zendesk.webhook({"ticket_id": str(number)}))
            p.say(f"  Zendesk #{number} (Zmanda brand, sample {sample}): webhook answered {status}")
        jira.add_user(
            CUSTOMER, "Juraj Novák", account_type="customer", time_zone="Europe/Bratislava"
        )
        for number, priority, plan, environment, what, summary in (
            (1, "High", "Professional", "Production", "P2 in production", "Calls drop after 30 s"),
            (2, "Highest", "Advanced", "Staging", "P1 asked for staging", "Staging IVR is silent"),
        ):
            headers, body = jira.add_issue(
                number,
                reporter=CUSTOMER,
                priority=priority,
                fields={JIRA_PLAN: {"value": plan}, JIRA_ENVIRONMENT: {"value": environment}},
                summary=summary,
            )
            status, _ = self.post("/webhooks/jira", headers, body)
            p.say(f"  Jira SUP-{number} ({what}): webhook answered {status}")
        delivery = zendesk.webhook({"ticket_id": "1001"}, invocation_id="retried-1001")
        self.post("/webhooks/zendesk", *delivery)
        again = self.post("/webhooks/zendesk", *delivery)[0]
        p.say(f"  (Zendesk retries a delivery: the repeat is answered {again} and dropped)")
        for name, helpdesk in self.runtime.helpdesks.items():
            if not helpdesk.webhook.intake.drain(30):
                raise DemoError(f"{name}: the webhook worker did not finish in 30 s")

    def zmanda_samples(self, now: datetime) -> list[tuple[int, str]]:
        """The bundled sample's zmanda tickets opened in Zendesk under the Zmanda brand (plan
        by tag, urgency and impact in their fields, the priority asked for as Zendesk's),
        created as long before ``now`` as before the sample's instant, each at least a
        minute old: (Zendesk id, sample id) of each."""
        zendesk = self.systems.zendesk
        zendesk.add_user(ZMANDA_REQUESTER, "end-user", name="Zofia Nowak")
        priorities = {"P1": "urgent", "P2": "high", "P3": "normal", "P4": "low"}
        text = resources.files("slabot").joinpath("samples/tickets.jsonl").read_text("utf-8")
        opened: list[tuple[int, str]] = []
        for line in text.splitlines():
            data = json.loads(line)
            if data.get("policy") != "zmanda":
                continue
            number = ZMANDA_FIRST + len(opened)
            age = max(SAMPLE_NOW - parse_instant(data["created_at"], "created_at"), timedelta())
            fields = {ZD_URGENCY: data.get("urgency"), ZD_IMPACT: data.get("impact")}
            zendesk.add_ticket(
                number,
                requester_id=ZMANDA_REQUESTER,
                created_at=now - max(age, timedelta(minutes=1)),
                priority=priorities.get(data.get("priority") or ""),
                tags=[f"plan_{data['plan']}"],
                custom_fields={key: value for key, value in fields.items() if value},
                subject=f"Zmanda backup job ({data['id']})",
                brand_id=ZMANDA_BRAND,
            )
            opened.append((number, str(data["id"])))
        return opened

    def flush(self) -> None:
        runtime = self.runtime
        for helpdesk in runtime.helpdesks.values():
            jobs.flush_helpdesk(helpdesk, "demo", runtime.health, runtime.metrics)
        if runtime.slack is not None:
            jobs.flush_slack(
                runtime.outbox, runtime.slack.send, "demo", runtime.health, runtime.metrics
            )

    def scan(self) -> None:
        runtime = self.runtime
        slack = runtime.slack
        jobs.breach_scan(
            runtime.engine,
            slack.store if slack else None,
            slack.config if slack else None,
            self.clock,
            runtime.metrics,
        )

    def write_back(self) -> None:
        self.printer.step("slabot decides and writes back")
        self.flush()
        self.printer.show()

    def nudge(self) -> None:
        now = self.clock.advance(timedelta(minutes=50))
        self.printer.step(f"{now:%H:%M} UTC: 50 minutes later, 75% of a one-hour target is gone")
        self.systems.set_now(now)
        self.scan()
        self.flush()
        self.printer.show()

    def reclassify(self) -> None:
        p = self.printer
        p.step("a lead reclassifies ZD-1003 in Slack")
        text = "reclassify ZD-1003 P2 exports block the customer's month-end close"
        p.say(f"  /sla {text}")
        before = len(self.systems.slack.responses)
        status, _ = self.post("/slack/events", *_slash_command(text, self.systems.slack))
        p.say(f"  Slack request answered {status}")
        self.systems.slack.wait_for(lambda: len(self.systems.slack.responses) > before, 15)
        reply = self.systems.slack.responses[-1]
        p.say(f"  [slack] reply to the lead: {str(reply.get('text'))[:160]}")
        self.flush()
        p.show()

    def breach(self) -> None:
        now = self.clock.advance(timedelta(minutes=20))
        self.printer.step(f"{now:%H:%M} UTC: nobody answered ZD-1001 within the hour")
        self.systems.set_now(now)
        self.scan()
        self.flush()
        self.printer.show()

    def digest(self) -> None:
        slack = self.runtime.slack
        if slack is None or not slack.config.digests:
            return
        self.printer.step("the digest for #support")
        jobs.digest(slack.store, self.clock, slack.config.digests[0])
        self.flush()
        self.printer.show()

    def check(self) -> list[str]:
        """What every system must have received by now."""
        problems = []
        zendesk, jira = self.systems.zendesk, self.systems.jira
        if zendesk.tickets[1002]["priority"] != "low":
            problems.append("Zendesk #1002 should have been capped to low (P4: not production)")
        if zendesk.tickets[1003]["priority"] != "high":
            problems.append("Zendesk #1003 should be high (P2) after the reclassification")
        notes = [
            event
            for audit in zendesk.audits.get(1003, [])
            for event in audit.get("events", [])
            if event.get("type") == "Comment" and not event.get("public")
        ]
        if not notes:
            problems.append("Zendesk #1003 should carry an internal note on the reclassification")
        zmanda = zendesk.tickets.get(ZMANDA_FIRST)
        if zmanda is None or zmanda["priority"] != "urgent":
            problems.append(
                f"Zendesk #{ZMANDA_FIRST} (Zmanda brand, urgency and impact high) should be "
                "urgent: zmanda's matrix gives P1"
            )
        elif not zendesk.shown(ZMANDA_FIRST)["fields"].get(ZD_FIRST_RESPONSE):
            problems.append(f"Zendesk #{ZMANDA_FIRST} should show its zmanda first-response due")
        if jira.shown(2)["priority"] != "Medium":
            problems.append("Jira SUP-2 should have been capped to Medium (P3: not production)")
        texts = " ".join(self.printer.received["slack"])
        for wanted in ("message in", "digest"):
            if wanted not in texts.lower():
                problems.append(f"Slack should have received a {wanted!r} message")
        problems.extend(f"fake Slack: {problem}" for problem in self.systems.slack.problems)
        return problems

    def live(self, url: str) -> int:
        say = self.printer.say
        self.clock.run_at(LIVE_RATE)
        service = self.runtime.settings.service
        scheduler = make_scheduler(service.timezone, service.misfire_grace_seconds)
        register_jobs(scheduler, self.runtime)
        scheduler.start()
        say()
        say(f"Dashboard: {url}/  (the clock now runs a minute per second; Ctrl-C to stop)")
        try:
            while self.thread is not None and self.thread.is_alive():
                self.thread.join(0.5)
        except KeyboardInterrupt:
            say("stopping")
        finally:
            scheduler.shutdown(wait=True)
        return 0


class DemoError(Exception):
    """The demo could not run (a port in use...)."""


def _slash_command(text: str, slack: Any) -> tuple[dict[str, str], bytes]:
    body = urlencode(
        {
            "token": "legacy-verification-token",
            "team_id": slack.team_id,
            "team_domain": "demo",
            "channel_id": "C0SUPPORT",
            "channel_name": "support",
            "user_id": AGENT,
            "user_name": "lead",
            "command": "/sla",
            "text": text,
            "api_app_id": "A0SLABOT",
            "response_url": slack.response_url("demo"),
            "trigger_id": "1337.42.demo",
        }
    )
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(SLACK_SIGNING_SECRET).generate_signature(
        timestamp=timestamp, body=body
    )
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Signature": str(signature),
        "X-Slack-Request-Timestamp": timestamp,
    }
    return headers, body.encode()


def main(once: bool, port: int, database: str | None, out: IO[str] | None = None) -> int:
    """``slabot demo [--once] [--port P] [--database FILE]``."""
    stream = out or sys.stdout
    try:
        demo = Demo(stream, database, port)
    except Exception as error:  # the fakes or the settings: say what, not a traceback
        stream.write(f"slabot demo: cannot start: {error}\n")
        return 1
    try:
        return demo.run(once)
    except DemoError as error:
        stream.write(f"slabot demo: {error}\n")
        return 1
    finally:
        demo.stop()
