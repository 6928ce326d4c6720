"""``slabot report`` and ``slabot credits``: the compliance report and the credits statement
of the database named by DATABASE_URL, as a table, CSV or JSON (stable contracts: README)."""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import IO, Any

from bot.compiled import Policy
from bot.policy import format_duration
from bot.ticket import parse_instant
from slabot.cli_support import add_command, require_schema
from slabot.policy_files import bundled_policy_paths, load_policy
from slabot.store.reports import (
    CreditsReport,
    Period,
    Report,
    ReportError,
    compliance_report,
    credits_report,
    date_range,
    dimensions,
    period,
)

FORMATS = ("table", "csv", "json")
COUNTS = (
    "tickets",
    "clocks",
    "met",
    "breached",
    "running",
    "attainment_percent",
    "median_seconds",
    "p90_seconds",
    "paused_seconds",
    "reclassified_tickets",
    "reclassifications",
)
"""The report's columns after the group's, in this order (CSV header and JSON keys)."""
EVIDENCE = (
    "organization",
    "plan",
    "currency",
    "amount",
    "rule",
    "ticket",
    "target",
    "priority",
    "started_at",
    "due",
    "stopped_at",
    "breached_at",
    "paused_seconds",
)
"""The credits CSV's columns: one line per clock that caused a credit."""


def add_commands(commands: Any) -> None:
    """Register ``report`` and ``credits`` on the ``slabot`` sub-command parser."""
    report_cmd = add_command(
        commands,
        "report",
        run_report,
        help="SLA attainment per plan, priority... for a period",
        description="Attainment of the clocks that started in the period, from the database "
        "named by DATABASE_URL: tickets, met, breached, still running, attainment, median and "
        "p90 business time to target, time paused, reclassifications (docs/reporting.md).",
    )
    _period_arguments(report_cmd, month_only=False)
    report_cmd.add_argument(
        "--by",
        default="plan,priority",
        help="comma-separated groups: policy, plan, commitment, priority, target, source, "
        "queue (or group), assignee, organization; empty for one line (default plan,priority)",
    )

    credits_cmd = add_command(
        commands,
        "credits",
        run_credits,
        help="service credits owed per organization for a month",
        description="Each customer organization's service credits for the month, by the credit "
        "rules of the policies' plans with commitment sla, with the breaches that caused them "
        "(docs/reporting.md).",
    )
    _period_arguments(credits_cmd, month_only=True)
    credits_cmd.add_argument(
        "--policy",
        action="append",
        metavar="FILE",
        help="policy file with the credit rules (repeatable; default: the bundled policies)",
    )


def _period_arguments(command: argparse.ArgumentParser, *, month_only: bool) -> None:
    if month_only:
        command.add_argument("--period", required=True, help="the month: 2026-11")
    else:
        command.add_argument(
            "--period", help="a month (2026-11), ISO week (2026-W47) or day (2026-11-20)"
        )
        command.add_argument("--from", dest="first", metavar="DATE", help="first day (included)")
        command.add_argument("--to", dest="last", metavar="DATE", help="last day (included)")
    command.add_argument("--tz", default="UTC", help="zone the period is read in (default UTC)")
    command.add_argument(
        "--priority",
        choices=("final", "at_creation"),
        default="final",
        help="count a reclassified ticket under its final priority (default) or its first",
    )
    command.add_argument("--as-of", help="ISO 8601 instant clocks are judged at (default: now)")
    command.add_argument("--format", choices=FORMATS, default="table")


def _window(args: argparse.Namespace) -> Period:
    first, last = getattr(args, "first", None), getattr(args, "last", None)
    if args.period and (first or last):
        raise ReportError("give --period or --from/--to, not both")
    if args.period:
        return period(args.period, args.tz)
    if first and last:
        return date_range(first, last, args.tz)
    raise ReportError("say which period: --period 2026-11, or --from 2026-11-01 --to 2026-11-30")


def _as_of(args: argparse.Namespace) -> datetime:
    if args.as_of is None:
        return datetime.now(UTC)
    return parse_instant(args.as_of, "--as-of")


def _session() -> Any:
    from sqlalchemy.orm import Session

    from slabot.store.db import make_engine

    engine = make_engine()
    require_schema(engine)
    return Session(engine)


def run_report(args: argparse.Namespace, out: IO[str] | None = None) -> int:
    window = _window(args)
    by = dimensions([name.strip() for name in args.by.split(",") if name.strip()])
    as_of = _as_of(args)
    with _session() as session:
        report = compliance_report(session, window, by, as_of, args.priority)
    write_report(report, args.format, out or sys.stdout)
    return 0


def run_credits(args: argparse.Namespace, out: IO[str] | None = None) -> int:
    if not re.fullmatch(r"\d{4}-\d{2}", args.period):
        raise ReportError(f"--period {args.period!r}: credits are monthly; write a month (2026-11)")
    window = period(args.period, args.tz)
    policies: dict[str, Policy] = {}
    for path in args.policy or [str(p) for p in bundled_policy_paths()]:
        policy = load_policy(path)
        policies[policy.name] = policy
    with _session() as session:
        owed = credits_report(session, window, policies, _as_of(args), args.priority)
    write_credits(owed, args.format, out or sys.stdout)
    return 0


def _iso(instant: datetime | None) -> str | None:
    return None if instant is None else instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _period_json(window: Period) -> dict[str, Any]:
    return {
        "label": window.label,
        "zone": window.zone,
        "from": _iso(window.start),
        "to": _iso(window.end),
    }


def _decimal(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def report_rows(report: Report) -> list[dict[str, Any]]:
    """The report as JSON-ready rows (the ``rows`` of ``--format json``)."""
    return [
        {
            "group": row.group,
            "tickets": row.tickets,
            "clocks": row.clocks,
            "met": row.met,
            "breached": row.breached,
            "running": row.running,
            "attainment_percent": _decimal(row.attainment),
            "median_seconds": row.median_seconds,
            "p90_seconds": row.p90_seconds,
            "paused_seconds": row.paused_seconds,
            "reclassified_tickets": row.reclassified_tickets,
            "reclassifications": row.reclassifications,
        }
        for row in report.rows
    ]


def write_report(report: Report, form: str, out: IO[str]) -> None:
    rows = report_rows(report)
    if form == "json":
        document = {
            "period": _period_json(report.period),
            "as_of": _iso(report.as_of),
            "by": list(report.by),
            "priority": report.priority,
            "rows": rows,
        }
        out.write(json.dumps(document, sort_keys=False) + "\n")
        return
    if form == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([*report.by, *COUNTS])
        for row in rows:
            writer.writerow(
                [
                    *(row["group"][n] or "" for n in report.by),
                    *("" if row[k] is None else row[k] for k in COUNTS),
                ]
            )
        return
    heading = (
        f"SLA attainment {report.period.label} ({report.period.zone}), clocks started "
        f"{_iso(report.period.start)} to {_iso(report.period.end)}, judged at "
        f"{_iso(report.as_of)}; priority: {report.priority}"
    )
    names = [*report.by, "tickets", "clocks", "met", "breached", "running", "attained"]
    names += ["median", "p90"]
    names += ["paused", "reclassified"]
    table = [names]
    for row in rows:
        table.append(
            [
                *(row["group"][n] or "-" for n in report.by),
                str(row["tickets"]),
                str(row["clocks"]),
                str(row["met"]),
                str(row["breached"]),
                str(row["running"]),
                "-" if row["attainment_percent"] is None else f"{row['attainment_percent']}%",
                _duration(row["median_seconds"]),
                _duration(row["p90_seconds"]),
                _duration(row["paused_seconds"]),
                f"{row['reclassified_tickets']} ({row['reclassifications']}x)",
            ]
        )
    _print_table(heading, table, out)


def _duration(seconds: int | None) -> str:
    return "-" if seconds is None else format_duration(seconds)


def _print_table(heading: str, table: Sequence[Sequence[str]], out: IO[str]) -> None:
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    out.write(heading + "\n")
    for line in table:
        cells = (cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        out.write("  ".join(cells).rstrip() + "\n")


def credits_json(owed: CreditsReport) -> dict[str, Any]:
    """The credits statement as JSON (``--format json``)."""
    return {
        "period": _period_json(owed.period),
        "as_of": _iso(owed.as_of),
        "statements": [
            {
                "organization": s.organization,
                "plan": s.plan,
                "currency": s.currency,
                "monthly_fee": str(s.monthly_fee),
                "percent_before_cap": str(s.percent_before_cap),
                "percent": str(s.percent),
                "amount": str(s.amount),
                "lines": [
                    {
                        "rule": line.rule,
                        "percent": str(line.percent),
                        "attainment_percent": _decimal(line.attainment),
                        "evidence": [
                            {
                                "ticket": c.ticket,
                                "target": c.target,
                                "priority": c.priority,
                                "started_at": _iso(c.started_at),
                                "due": _iso(c.due),
                                "stopped_at": _iso(c.stopped_at),
                                "breached_at": _iso(c.breached_at),
                                "paused_seconds": c.paused_seconds,
                            }
                            for c in line.evidence
                        ],
                    }
                    for line in s.lines
                ],
            }
            for s in owed.statements
        ],
    }


def write_credits(owed: CreditsReport, form: str, out: IO[str]) -> None:
    document = credits_json(owed)
    if form == "json":
        out.write(json.dumps(document) + "\n")
        return
    if form == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(EVIDENCE)
        for s in document["statements"]:
            for line in s["lines"]:
                for c in line["evidence"] or [{}]:
                    writer.writerow(
                        [
                            s["organization"] or "",
                            s["plan"],
                            s["currency"],
                            s["amount"],
                            line["rule"],
                            *(c.get(k) or "" for k in EVIDENCE[5:12]),
                            c.get("paused_seconds", ""),
                        ]
                    )
        return
    out.write(
        f"Service credits {owed.period.label} ({owed.period.zone}), judged at {_iso(owed.as_of)}\n"
    )
    if not document["statements"]:
        out.write("no organization on a plan with credit rules had clocks in the period\n")
    for s in document["statements"]:
        capped = (
            ""
            if s["percent"] == s["percent_before_cap"]
            else f" (capped from {s['percent_before_cap']}%)"
        )
        out.write(
            f"\n{s['organization'] or '(no organization)'} - plan {s['plan']}: "
            f"{s['amount']} {s['currency']} owed = {s['percent']}%{capped} of the monthly fee "
            f"{s['monthly_fee']} {s['currency']}\n"
        )
        if not s["lines"]:
            out.write("  no credit: every rule was met\n")
        for line in s["lines"]:
            attained = (
                ""
                if line["attainment_percent"] is None
                else f" (attained {line['attainment_percent']}%)"
            )
            out.write(f"  {line['rule']}: {line['percent']}%{attained}\n")
            table = [["ticket", "target", "priority", "due", "stopped", "paused"]]
            for c in line["evidence"]:
                table.append(
                    [
                        c["ticket"],
                        c["target"],
                        c["priority"],
                        c["due"] or "-",
                        c["stopped_at"] or "running",
                        _duration(c["paused_seconds"]),
                    ]
                )
            if len(table) > 1:
                widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
                for row in table:
                    cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
                    out.write("    " + "  ".join(cells).rstrip() + "\n")
