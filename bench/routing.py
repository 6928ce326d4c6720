"""Benchmark: what a 20-rule routing table adds to ``slabot evaluate`` per ticket.

The tickets of ``bench/evaluate.py`` (same generator, same seed), each also carrying the
routing fields a helpdesk would give it (source, brand, group, tags, project, issue type,
labels, fields...), are evaluated in one run two ways:

* without routing: ``slabot evaluate --policy cloudtalk --policy zoom --policy zmanda``, each
  line naming its ``policy`` (what bench/evaluate.py measures);
* with routing: ``slabot evaluate --routing CONFIG``, the same lines without ``policy``, a
  config whose 20 rules (17 that match none of these tickets, placed first, then the three
  seed policies' rules, the last the default) choose each ticket's policy.

Both outputs must be byte-identical (routing chose each ticket's own policy). The two are
timed in interleaved rounds, alternating which goes first, and the goal is judged on the
median of the per-round ratios of the process's CPU time (wall-clock ratios, printed too,
swing widely when other processes share the cores): routing at most 10% more per ticket.

Run from the repository root: ``.venv/bin/python bench/routing.py [--n N] [--rounds R]``.
Exit status 1 if the goal fails or the outputs differ.
"""

# ruff: noqa: E402
from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]  # see evaluate.py

import argparse
import contextlib
import gc
import importlib.util
import io
import json
import os
import platform
import random
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from slabot import cli

_SPEC = importlib.util.spec_from_file_location("bench_evaluate", _HERE / "evaluate.py")
assert _SPEC is not None and _SPEC.loader is not None
evaluate_bench = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(evaluate_bench)

ZOOM_BRAND, ZMANDA_BRAND = "360000000001", "360000000002"
GOAL = 1.10

ROUTING = """
routing:
  rules:
    - {name: brand-a, policy: zoom, when: {source: zendesk, brand: "360000000010"}}
    - name: brand-b
      policy: zmanda
      when: {source: zendesk, brand: ["360000000011", "360000000012"]}
    - {name: form, policy: zoom, when: {source: zendesk, form: "90"}}
    - {name: escalations, policy: zoom, when: {source: zendesk, group: Escalations, tags: [vip]}}
    - {name: gold, policy: zmanda, when: {source: zendesk, tags: [vip_gold, vip_platinum]}}
    - name: legacy-plan
      policy: zoom
      when: {source: zendesk, organization_field: {key: support_plan, equals: legacy}}
    - name: partner-field
      policy: zmanda
      when: {source: zendesk, custom_field: {id: 360001000099, equals: [partner, reseller]}}
    - name: acme
      policy: zoom
      when: {source: zendesk, any: [{organization: Acme}, {organization: Initech}]}
    - {name: ops, policy: zoom, when: {source: jira, project: [OPS, INFRA]}}
    - {name: security, policy: zoom, when: {source: jira, issue_type: Bug, labels: [security]}}
    - {name: billing, policy: zmanda, when: {source: jira, components: [Billing, Invoices]}}
    - name: jira-partner
      policy: zmanda
      when: {source: jira, field: {id: customfield_10099, equals: "Yes"}}
    - name: jira-all
      policy: zoom
      when: {all: [{source: jira}, {project: SUP}, {labels: [legacy]}]}
    - {name: legal-hold, policy: zoom, when: {tags: [legal_hold]}}
    - {name: frozen, policy: zmanda, when: {labels: [frozen]}}
    - {name: vendor, policy: zoom, when: {source: zendesk, brand: "360000000013"}}
    - {name: sandbox, policy: zoom, when: {source: jira, project: SANDBOX}}
    - {name: cloudtalk-on-jira, policy: cloudtalk, when: {source: jira, project: [CT]}}
    - name: zmanda-customers
      policy: zmanda
      when: {source: zendesk, any: [{brand: "360000000002"}, {tags: [product_zmanda]}]}
    - {name: zoom-customers, policy: zoom, default: true}
"""


def routing_fields(rng: random.Random, policy: str) -> dict[str, Any]:
    """What the helpdesk would say about a ticket of ``policy`` (none of it matches a decoy)."""
    tags = rng.sample(("billing", "web", "mobile", "api", "trial", "renewal"), rng.randrange(4))
    if policy == "cloudtalk":
        return {
            "source": "jira",
            "project": "CT",
            "issue_type": rng.choice(("Incident", "Service request", "Bug")),
            "components": rng.sample(("Voice", "Dialer", "CRM"), rng.randrange(3)),
            "labels": tags,
            "fields": {"customfield_10050": rng.choice(("Advanced", "Basic"))},
        }
    fields: dict[str, Any] = {
        "source": "zendesk",
        "group": rng.choice(("Support", "Tier 2", "Onboarding")),
        "organization": rng.choice(("Globex", "Umbrella", "Hooli", "Soylent")),
        "custom_fields": {"360001000001": "env_production", "360001000099": None},
        "organization_fields": {"support_plan": "premier", "country": "US"},
    }
    if policy == "zmanda":
        if rng.random() < 0.7:
            fields["brand"] = ZMANDA_BRAND
        else:
            fields["brand"] = ZOOM_BRAND
            tags = [*tags, "product_zmanda"]
    else:
        fields["brand"] = ZOOM_BRAND
    fields["tags"] = tags
    return fields


def write_files(folder: Path, n: int, seed: int, now: int) -> tuple[Path, Path, Counter[str]]:
    """(lines naming their policy, the same lines routed instead) and the policy mix."""
    rng, extra = random.Random(seed), random.Random(seed + 1)
    named, routed = folder / "named.jsonl", folder / "routed.jsonl"
    mix: Counter[str] = Counter()
    with named.open("w", encoding="utf-8") as one, routed.open("w", encoding="utf-8") as two:
        for number in range(1, n + 1):
            ticket = evaluate_bench.make_ticket(rng, number, now)
            policy = ticket["policy"]
            mix[policy] += 1
            ticket.update(routing_fields(extra, policy))
            one.write(json.dumps(ticket) + "\n")
            del ticket["policy"]
            two.write(json.dumps(ticket) + "\n")
    return named, routed, mix


def run(args: list[str], target: Path) -> tuple[float, float]:
    """(CPU seconds of this process, wall seconds) of one in-process ``slabot`` run."""
    errors = io.StringIO()
    gc.collect()
    with (
        target.open("w", encoding="utf-8") as out,
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(errors),
    ):
        cpu, wall = time.process_time(), time.perf_counter()
        status = cli.main(args)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if status != 0:
        raise SystemExit(f"FAIL: slabot {' '.join(args[:2])} exited {status}: {errors.getvalue()}")
    return cpu, wall


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=50_000, help="tickets (50000)")
    parser.add_argument("--seed", type=int, default=20261123, help="random seed (20261123)")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds (9)")
    args = parser.parse_args(argv)
    now = int(datetime.fromisoformat(evaluate_bench.NOW).timestamp())
    print(f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="slabot-bench-routing-") as name:
        folder = Path(name)
        named, routed, mix = write_files(folder, args.n, args.seed, now)
        config = folder / "slabot.yaml"
        policy_dir = evaluate_bench.POLICY_DIR
        files = ", ".join(str(policy_dir / f"{p}.yaml") for p in evaluate_bench.POLICIES)
        config.write_text(f"service:\n  policies: [{files}]\n{ROUTING}", encoding="utf-8")
        rules = ROUTING.count("name:")
        shown = ", ".join(f"{mix[p]:,} {p}" for p in evaluate_bench.POLICIES)
        print(f"tickets: {args.n:,} ({shown}); routing table: {rules} rules")
        without = ["evaluate", *evaluate_bench.policy_args(), "--now", evaluate_bench.NOW]
        with_routing = ["evaluate", "--routing", str(config), "--now", evaluate_bench.NOW]
        out_a, out_b = folder / "a.jsonl", folder / "b.jsonl"
        run([*without, str(named)], out_a)  # warm-up: imports, policies, file cache
        run([*with_routing, str(routed)], out_b)
        if out_a.read_bytes() != out_b.read_bytes():
            raise SystemExit("FAIL: the routed decisions differ from the named policies' ones")
        times_a: list[float] = []
        times_b: list[float] = []
        ratios: list[float] = []
        wall_ratios: list[float] = []
        for index in range(args.rounds):
            if index % 2 == 0:
                a, wall_a = run([*without, str(named)], out_a)
                b, wall_b = run([*with_routing, str(routed)], out_b)
            else:
                b, wall_b = run([*with_routing, str(routed)], out_b)
                a, wall_a = run([*without, str(named)], out_a)
            times_a.append(a)
            times_b.append(b)
            ratios.append(b / a)
            wall_ratios.append(wall_b / wall_a)
    n = args.n
    print("all routed decisions are byte-identical to those of the lines naming their policy")
    print()
    print("CPU time of the process (other processes sharing the cores do not count):")
    print(f"{'run':<44} {'median s':>9} {'best s':>8} {'µs/ticket':>10}")
    print("-" * 74)
    for label, times in (("without routing (--policy x3)", times_a), ("with routing", times_b)):
        median = statistics.median(times)
        print(f"{label:<44} {median:>9.3f} {min(times):>8.3f} {median / n * 1e6:>10.2f}")
    ratio = statistics.median(ratios)
    per_ticket = (statistics.median(times_b) - statistics.median(times_a)) / n * 1e6
    print(
        f"per-round ratios: {', '.join(f'{r:.3f}' for r in ratios)}; routing costs about "
        f"{per_ticket:.2f} µs per ticket"
    )
    print(
        f"(not judged) wall-clock ratios: {', '.join(f'{r:.3f}' for r in wall_ratios)}; "
        f"median {statistics.median(wall_ratios):.3f}"
    )
    verdict = "PASS" if ratio <= GOAL else "FAIL"
    print()
    print(
        f"goal: routing adds at most {GOAL - 1:.0%} per ticket: median ratio {ratio:.3f} "
        f"({(ratio - 1) * 100:+.1f}%; best-of ratio {min(times_b) / min(times_a):.3f})  {verdict}"
    )
    return 0 if ratio <= GOAL else 1


if __name__ == "__main__":
    raise SystemExit(main())
