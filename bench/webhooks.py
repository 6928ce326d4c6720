"""Benchmark: signed Zendesk webhooks through the running service, beside a no-op endpoint.

One run starts, on loopback only:

* the fake Zendesk in its own process, holding ``--tickets`` tickets (it answers the fetch
  the webhook worker makes for each accepted delivery);
* ``slabot run`` in its own process (database: a SQLite file in a temporary folder, or
  ``--database-url``), with ``/noop`` enabled: an endpoint of the same server that reads
  the body and answers 202 without doing anything; its webhook jobs run in its child
  process, as by default (``--webhook-worker thread``: on a thread of the serving process);
* the load, from this process: HTTP/1.1 keep-alive connections on asyncio.

Two kinds of phase per endpoint (``/noop``, then ``/webhooks/zendesk``), each bounded in time and
in requests:

1. throughput: ``--concurrency`` connections send back to back for ``--duration`` seconds;
   requests per second and the acknowledgement's p50/p99; ``--rounds`` rounds alternating
   the endpoints, the best round of each compared (a burst of other work on the machine
   slows a round, not the comparison);
2. fixed rate: ``--rate`` requests per second for ``--duration`` seconds, open loop (each
   request is due at its slot; latency is measured from the slot, so a slow answer delays
   the requests behind it and counts against them); p50/p99 of the acknowledgement. The
   webhooks' fixed-rate phase runs during a write-back flush: first one webhook about each
   of ``--backlog`` more tickets, whose jobs fetch and ingest them and so owe the fake
   Zendesk a tag and their due dates (the outbox); the fake answers each ``update_many``
   ``--write-latency`` seconds late, so the flusher (every ``--flush-interval`` seconds)
   sends the writes more slowly than the jobs make them; once the jobs are done, the phase
   starts while the flusher still works through them (``slabot_outbox_pending`` is
   printed at the phase's start and end: it must fall, and not to zero).

Every webhook is signed as Zendesk signs (HMAC-SHA256 over timestamp + body), with its own
invocation id, about one of the tickets in turn. Goals: the webhook's p99 under 50 ms at 200
requests per second during the flush, and no loss: every signed delivery of that phase
answered 202 and found recorded in ``webhook_deliveries`` once the service has stopped.
Exit status 1 if a goal fails or an answer is not what it should be. The throughput against
the no-op is printed as information: it measures the machine more than slabot (see
docs/benchmarks.md, "Why the throughput goal was retired").

Run from the repository root: ``.venv/bin/python bench/webhooks.py [--duration S]``.
"""

# ruff: noqa: E402
from __future__ import annotations

import sys
from pathlib import Path

# bench/calendar.py shares its name with the standard library's ``calendar``: take this
# folder off sys.path before importing anything that may import that module.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import argparse
import asyncio
import json
import multiprocessing
import os
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connectors.zendesk.webhook import sign
from slabot.demo.environment import (
    ZD_FIRST_RESPONSE,
    ZD_NEXT_UPDATE,
    ZD_RESTORATION,
    ZENDESK_SECRET,
    write_config,
)

SLABOT = Path(sys.executable).parent / "slabot"
REQUESTER = 501
BACKLOG_CHUNK = 500


def serve_fake_zendesk(tickets: int, backlog: int, write_latency: float, pipe: Connection) -> None:
    """The fake Zendesk in its own process: reports its URL, serves until told to stop.

    Tickets ``1..tickets`` owe nothing once read; the ``backlog`` ones after them each owe
    writes: an urgent ticket not reported by phone gets the tag ``sla_p1_not_by_phone``
    (policy zoom), and its three due-date fields are filled in. Each ``update_many`` (100
    tickets' writes) is answered ``write_latency`` seconds late, as a real Zendesk takes
    its time (the fake answers at once otherwise, and a flush would be over in a blink)."""
    from slabot.fakes.zendesk import FakeZendesk

    fake = FakeZendesk(now=datetime.now(UTC), webhook_secret=ZENDESK_SECRET)
    fake.add_user(REQUESTER, "end-user")
    for number in range(1, tickets + 1):
        fake.add_ticket(number, requester_id=REQUESTER, priority="normal")
    due_fields = dict.fromkeys((ZD_FIRST_RESPONSE, ZD_RESTORATION, ZD_NEXT_UPDATE))
    for number in range(tickets + 1, tickets + backlog + 1):
        fake.add_ticket(
            number, requester_id=REQUESTER, priority="urgent", custom_fields=dict(due_fields)
        )
    fake.slow_next(backlog, write_latency, path_contains="update_many", method="PUT")
    fake.start()
    pipe.send(fake.url)
    pipe.recv()  # stop
    pipe.send(len(fake.calls))
    fake.stop()


@dataclass
class Phase:
    endpoint: str
    mode: str
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    results: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    """Share of one core each process used during the phase (Linux only)."""

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))
        return ordered[index] * 1000

    def cpu_line(self) -> str:
        shares = ", ".join(f"{name} {share:.0%}" for name, share in self.cpu.items())
        return f"{'':<18} {'cpu (of one core):':<22} {shares}"

    def line(self) -> str:
        statuses = ", ".join(f"{code}: {n}" for code, n in sorted(self.statuses.items()))
        results = ", ".join(f"{name}: {n}" for name, n in sorted(self.results.items()))
        return (
            f"{self.endpoint:<18} {self.mode:<22} {len(self.latencies):>7} "
            f"{self.rps:>9.0f} {self.percentile(50):>8.2f} {self.percentile(99):>8.2f}   "
            f"{statuses}{'; ' + results if results else ''}"
        )


Request = tuple[bytes, str]
"""Raw HTTP request bytes and what it is about (for the phase's result counts)."""


def noop_requests(port: int) -> Iterator[Request]:
    body = json.dumps({"ticket_id": "1"}).encode()
    raw = (
        f"POST /noop HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    while True:
        yield raw, ""


def webhook_requests(
    port: int, tickets: int, first: int = 1, sent: list[str] | None = None
) -> Iterator[Request]:
    """Signed deliveries about tickets ``first`` .. ``first + tickets - 1`` in turn; each
    invocation id is appended to ``sent``."""
    number = 0
    while True:
        number += 1
        invocation = uuid.uuid4().hex
        if sent is not None:
            sent.append(invocation)
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        # Each delivery a change of its own (``seq``): two copies of one signed timestamp +
        # body are one delivery (answered 200 ``duplicate``), whatever their invocation ids.
        body = json.dumps(
            {"ticket_id": str(number % tickets + first), "updated_at": stamp, "seq": str(number)}
        ).encode()
        headers = (
            f"POST /webhooks/zendesk HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"X-Zendesk-Webhook-Id: 01HBENCH\r\n"
            f"X-Zendesk-Webhook-Invocation-Id: {invocation}\r\n"
            f"X-Zendesk-Webhook-Signature: {sign(ZENDESK_SECRET, stamp, body)}\r\n"
            f"X-Zendesk-Webhook-Signature-Timestamp: {stamp}\r\n\r\n"
        )
        yield headers.encode() + body, "webhook"


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes
) -> tuple[int, bytes]:
    writer.write(raw)
    await writer.drain()
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("the server closed the connection")
    status = int(status_line.split()[1])
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    body = await reader.readexactly(length) if length else b""
    return status, body


def _record(phase: Phase, status: int, body: bytes, latency: float) -> None:
    phase.latencies.append(latency)
    phase.statuses[status] += 1
    if body.startswith(b"{"):
        try:
            result = json.loads(body).get("status")
        except ValueError:
            result = None
        if isinstance(result, str):
            phase.results[result] += 1


async def throughput(
    port: int,
    requests: Iterator[Request],
    phase: Phase,
    concurrency: int,
    duration: float,
    cap: int | None = None,
) -> None:
    """``concurrency`` connections, back to back, for ``duration`` seconds (at most ``cap``
    requests)."""
    deadline = time.perf_counter() + duration
    cap = cap if cap is not None else int(duration * 60_000)  # a bound, whatever the speed

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline and len(phase.latencies) < cap:
                raw, _ = next(requests)
                began = time.perf_counter()
                status, body = await _exchange(reader, writer, raw)
                _record(phase, status, body, time.perf_counter() - began)
        finally:
            writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    phase.elapsed = time.perf_counter() - began


async def fixed_rate(
    port: int, requests: Iterator[Request], phase: Phase, rate: float, duration: float
) -> None:
    """``rate`` requests per second for ``duration`` seconds; latency from each slot."""
    total = int(rate * duration)
    start = time.perf_counter() + 0.05
    slots = iter(range(total))
    connections = max(8, int(rate / 20))

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for slot in slots:
                due = start + slot / rate
                wait = due - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
                raw, _ = next(requests)
                status, body = await _exchange(reader, writer, raw)
                _record(phase, status, body, time.perf_counter() - due)
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    phase.elapsed = time.perf_counter() - start


def wait_ready(port: int, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"slabot run exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("slabot run did not become ready")


def settle(port: int, timeout: float = 60) -> None:
    """Wait until the service has no webhook job queued (``/metrics``), then a second more:
    each phase starts from an idle service, so no phase pays for the jobs of the one before
    it (the no-op's rounds after the webhooks' would, and flatter the ratio)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
        depths = [
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("slabot_webhook_queue_depth{")
        ]
        if not any(depths):
            break
        time.sleep(0.2)
    time.sleep(1.0)


def outbox_pending(port: int) -> float:
    """Writes still to be sent, all targets (``slabot_outbox_pending``)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("slabot_outbox_pending{")
    )


def recorded(database: str, invocations: list[str]) -> int:
    """How many of ``invocations`` the service recorded (``webhook_deliveries``)."""
    from sqlalchemy import select

    from slabot.store.db import make_engine
    from slabot.store.models import WebhookDelivery

    keys = [f"invocation:{invocation}" for invocation in invocations]
    engine = make_engine(database)
    found = 0
    try:
        with engine.connect() as connection:
            for start in range(0, len(keys), 500):
                found += len(
                    connection.execute(
                        select(WebhookDelivery.delivery_key).where(
                            WebhookDelivery.source == "zendesk",
                            WebhookDelivery.delivery_key.in_(keys[start : start + 500]),
                        )
                    ).all()
                )
    finally:
        engine.dispose()
    return found


CpuTimes = dict[str, float]


def cpu_times(service: int, fake: int | None, postgres: bool) -> CpuTimes | None:
    """CPU seconds used so far by each process taking part, from ``/proc`` (None elsewhere):
    the service, its child processes (the webhook jobs), the fake Zendesk, this load
    generator and, on PostgreSQL, the server's processes. Where the time goes is what
    explains the ratio, so each throughput round prints it."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        return None
    tick = os.sysconf("SC_CLK_TCK")
    totals: CpuTimes = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        command, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat.rsplit(")", 1)[1]
        fields = rest.split()
        pid, parent = int(entry.name), int(fields[1])
        if pid == service:
            name = "service"
        elif parent == service:
            name = "webhook jobs"
        elif pid == fake:
            name = "fake Zendesk"
        elif pid == os.getpid():
            name = "load generator"
        elif postgres and command.startswith("postgres"):
            name = "PostgreSQL"
        else:
            continue
        totals[name] = totals.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return totals


def cpu_shares(before: CpuTimes | None, after: CpuTimes | None, elapsed: float) -> CpuTimes:
    if before is None or after is None or elapsed <= 0:
        return {}
    order = ("service", "webhook jobs", "load generator", "fake Zendesk", "PostgreSQL")
    return {
        name: (after[name] - before.get(name, 0.0)) / elapsed for name in order if name in after
    }


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per phase")
    parser.add_argument("--concurrency", type=int, default=16, help="connections (throughput)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating throughput rounds (best kept)"
    )
    parser.add_argument("--rate", type=float, default=200.0, help="requests/s (fixed rate)")
    parser.add_argument("--tickets", type=int, default=200, help="tickets the webhooks name")
    parser.add_argument(
        "--backlog",
        type=int,
        default=2400,
        help="more tickets ingested before the webhooks' fixed-rate phase: their writes are "
        "flushed during it",
    )
    parser.add_argument(
        "--flush-interval",
        type=float,
        default=1.0,
        help="service.flush_interval_seconds",
    )
    parser.add_argument(
        "--write-latency",
        type=float,
        default=3.0,
        help="seconds the fake Zendesk takes to answer each update_many (100 tickets)",
    )
    parser.add_argument("--database-url", help="default: a SQLite file in a temporary folder")
    parser.add_argument(
        "--webhook-worker",
        choices=("process", "thread"),
        default="process",
        help="where slabot run does the webhook jobs (service.webhook_worker)",
    )
    args = parser.parse_args(argv)

    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    fake = context.Process(
        target=serve_fake_zendesk,
        args=(args.tickets, args.backlog, args.write_latency, theirs),
        daemon=True,
    )
    fake.start()
    zendesk_url = ours.recv()
    folder = tempfile.TemporaryDirectory(prefix="slabot-bench-")
    # Flushes back to back (every second); each update_many answered late (--write-latency):
    # the writes are sent more slowly than the backlog's jobs make them, so they pile up
    # while it is ingested, and the flush is still at them when the fixed-rate phase starts.
    config = write_config(
        Path(folder.name) / "slabot.yaml",
        {"noop_endpoint": True, "flush_interval_seconds": args.flush_interval},
    )
    database = args.database_url or f"sqlite:///{folder.name}/bench.db"
    postgres = database.startswith("postgresql")
    port = free_port()
    environ = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ZENDESK_", "JIRA_", "SLACK_", "SLABOT_", "DATABASE_URL"))
    }
    environ.update(
        {
            "DATABASE_URL": database,
            "SLABOT_CONFIG": str(config),
            "SLABOT_LOG_LEVEL": "WARNING",
            "SLABOT_WEBHOOK_WORKER": args.webhook_worker,
            "ZENDESK_URL": zendesk_url,
            "ZENDESK_EMAIL": "slabot@example.com",
            "ZENDESK_API_TOKEN": "bench-token",
            "ZENDESK_WEBHOOK_SECRET": ZENDESK_SECRET,
        }
    )
    log = Path(folder.name) / "service.log"
    with log.open("wb") as handle:
        service = subprocess.Popen(
            [str(SLABOT), "run", "--port", str(port)],
            env=environ,
            cwd=folder.name,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    phases: list[Phase] = []
    try:
        wait_ready(port, service)
        print(
            f"slabot run on 127.0.0.1:{port} ({database.split(':')[0]}, webhook jobs in a "
            f"{args.webhook_worker}), fake Zendesk "
            f"{zendesk_url} with {args.tickets} tickets; {os.cpu_count()} CPUs; "
            f"{args.duration:g} s per phase"
        )

        def run(endpoint: str, mode: str, make: Callable[[], Iterator[Request]]) -> Phase:
            settle(port)
            phase = Phase(endpoint, mode)
            if mode.startswith("throughput"):
                before = cpu_times(service.pid, fake.pid, postgres)
                asyncio.run(throughput(port, make(), phase, args.concurrency, args.duration))
                after = cpu_times(service.pid, fake.pid, postgres)
                phase.cpu = cpu_shares(before, after, phase.elapsed)
            else:
                asyncio.run(fixed_rate(port, make(), phase, args.rate, args.duration))
            phases.append(phase)
            return phase

        def noop() -> Iterator[Request]:
            return noop_requests(port)

        def webhooks() -> Iterator[Request]:
            return webhook_requests(port, args.tickets)

        # Warm up both paths (imports, connection pools, the first fetches).
        asyncio.run(throughput(port, noop(), Phase("", ""), 4, 1.0))
        asyncio.run(throughput(port, webhooks(), Phase("", ""), 4, 1.0))
        # Alternating rounds, the best of each endpoint kept: a burst of another job on the
        # machine slows one round, not the comparison.
        noop_rounds, hook_rounds = [], []
        for number in range(1, args.rounds + 1):
            mode = f"throughput, round {number}"
            noop_rounds.append(run("/noop", mode, noop))
            hook_rounds.append(run("/webhooks/zendesk", mode, webhooks))
        noop_max = max(noop_rounds, key=lambda phase: phase.rps)
        hook_max = max(hook_rounds, key=lambda phase: phase.rps)
        noop_rate = run("/noop", f"fixed {args.rate:g}/s", noop)
        # The backlog: one delivery about each new ticket; their jobs ingest them, each owing
        # the fake Zendesk its writes. The phase starts once the jobs are done (``run``
        # settles first), while the flusher works through the writes.
        backlog = Phase("/webhooks/zendesk", "backlog")
        owing = webhook_requests(port, args.backlog, first=args.tickets + 1)
        for start in range(0, args.backlog, BACKLOG_CHUNK):
            # Well under what the webhook queue holds (1,000): none is refused busy.
            chunk = min(BACKLOG_CHUNK, args.backlog - start)
            asyncio.run(throughput(port, owing, backlog, 4, 60.0, cap=start + chunk))
            settle(port)
        phases.append(backlog)
        pending_before = outbox_pending(port)
        sent: list[str] = []
        hook_rate = Phase("/webhooks/zendesk", f"fixed {args.rate:g}/s, flushing")
        asyncio.run(
            fixed_rate(
                port,
                webhook_requests(port, args.tickets, sent=sent),
                hook_rate,
                args.rate,
                args.duration,
            )
        )
        pending_after = outbox_pending(port)
        phases.append(hook_rate)
    finally:
        service.terminate()
        try:
            service.wait(30)
        except subprocess.TimeoutExpired:
            service.kill()
        ours.send("stop")
        fetches = ours.recv() if ours.poll(10) else "?"
        fake.join(10)
    print()
    print(f"{'endpoint':<18} {'mode':<22} {'requests':>7} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for phase in phases:
        print(phase.line())
        if phase.cpu:
            print(phase.cpu_line())
    print(f"(the fake Zendesk answered {fetches} requests: the worker's fetches and write-backs)")
    ratio = hook_max.rps / noop_max.rps if noop_max.rps else 0.0
    p99 = hook_rate.percentile(99)
    bad = sum(
        n for phase in hook_rounds for code, n in phase.statuses.items() if code not in (200, 202)
    )
    accepted = hook_rate.statuses.get(202, 0)
    stored = recorded(database, sent)
    lost = len(sent) - min(accepted, stored)
    flushing = pending_before > 0 and 0 < pending_after < pending_before
    backlog_refused = sum(n for code, n in backlog.statuses.items() if code != 202)
    print()
    print(
        f"information: webhook throughput {ratio:.0%} of the no-op's ({hook_max.rps:.0f} vs "
        f"{noop_max.rps:.0f} req/s, the best of {args.rounds} alternating {args.duration:g} s "
        "rounds each; no goal: it measures the machine, docs/benchmarks.md)"
    )
    print(
        f"flush during the phase: {pending_before:.0f} writes owed at its start "
        f"({backlog_refused} backlog deliveries not accepted), {pending_after:.0f} at its end: "
        f"{'PASS' if flushing else 'FAIL (raise --backlog)'}"
    )
    print(
        f"goal: webhook p99 < 50 ms at {args.rate:g} req/s during the flush: {p99:.1f} ms "
        f"(no-op, no flush: {noop_rate.percentile(99):.1f} ms): {'PASS' if p99 < 50 else 'FAIL'}"
    )
    print(
        f"goal: no loss: {len(sent)} signed deliveries sent, {accepted} answered 202, "
        f"{stored} recorded: {'PASS' if lost == 0 and accepted == len(sent) else 'FAIL'}"
    )
    print(f"answers other than 200/202 to signed webhooks in the throughput rounds: {bad}")
    folder.cleanup()
    passed = p99 < 50 and lost == 0 and accepted == len(sent) and flushing and bad == 0
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
