"""The ``slabot`` command line: evaluate, explain and check policies (stable names and flags)."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, tzinfo
from importlib import resources
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.compiled import Policy
from bot.engine import Decision, evaluate
from bot.errors import SlabotError
from bot.explain import explain
from bot.routing import Router
from bot.ticket import Ticket, parse_instant
from slabot.cli_support import UsageError, add_command, database_errors, require_schema
from slabot.policy_files import PolicyFileError, bundled_policy_paths, load_policy

SAMPLE_NOW = "2026-11-23T12:00:00Z"
"""The instant the bundled sample is evaluated at, so its states read the same every day."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except SlabotError as error:
        print(f"slabot: {error}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="slabot", description="Enforce a support policy's priorities and SLA targets."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    evaluate_cmd = add_command(
        commands,
        "evaluate",
        _evaluate,
        help="evaluate tickets (JSON Lines) against a policy",
        description="Read one ticket per line (JSON) and print one decision per line.",
    )
    evaluate_cmd.add_argument(
        "--policy",
        action="append",
        default=[],
        metavar="FILE",
        help="policy file; repeat to mix policies (each ticket then names its 'policy')",
    )
    evaluate_cmd.add_argument(
        "--routing",
        metavar="CONFIG",
        help="route each ticket by the routing: rules of this config file (config/slabot.yaml) "
        "to one of the policies it loads, instead of --policy",
    )
    _now_option(evaluate_cmd)
    evaluate_cmd.add_argument(
        "--format", choices=("jsonl", "table"), default="jsonl", help="output format"
    )
    evaluate_cmd.add_argument(
        "--tz",
        default="UTC",
        metavar="ZONE",
        help="IANA time zone the table's times are shown in (default UTC), e.g. Europe/Paris",
    )
    evaluate_cmd.add_argument(
        "--sample",
        action="store_true",
        help=f"evaluate the bundled sample tickets with the bundled policies (at {SAMPLE_NOW})",
    )
    evaluate_cmd.add_argument("input", nargs="?", default="-", help="JSON Lines file, or - (stdin)")

    explain_cmd = add_command(
        commands, "explain", _explain, help="explain a ticket's due dates for a person"
    )
    explain_cmd.add_argument("--policy", required=True, metavar="FILE", help="policy file")
    _now_option(explain_cmd)
    _ticket_argument(explain_cmd)

    check_cmd = add_command(
        commands,
        "check-config",
        _check_config,
        help="validate policy files and service config files (config/slabot.yaml)",
        description="Validate each file: a policy, or the service's config (its top-level keys "
        "are among service, zendesk, jira, slack). Problems are printed as "
        "file:line: field.path: message; the exit status is 1 if any file is invalid.",
    )
    check_cmd.add_argument(
        "--kind",
        choices=("auto", "policy", "service"),
        default="auto",
        help="what the files are (default: told apart by their top-level keys)",
    )
    check_cmd.add_argument("files", nargs="+", metavar="FILE")

    routes = add_command(
        commands,
        "routes",
        help="the routing rules of config/slabot.yaml",
        description="Which policy routing: gives a ticket, and why.",
    ).add_subparsers(dest="routes_command", required=True)
    routes_explain_cmd = add_command(
        routes,
        "explain",
        _routes_explain,
        help="say which rule a ticket matches and why the earlier ones do not",
        description="Walk the routing rules in order for one ticket (the JSON Lines input of "
        "slabot evaluate, with its routing fields: source, brand, project...).",
    )
    routes_explain_cmd.add_argument(
        "--config",
        default="config/slabot.yaml",
        metavar="FILE",
        help="the config file whose routing: section is read (default config/slabot.yaml)",
    )
    _ticket_argument(routes_explain_cmd)

    from connectors.cli import add_backfill_command

    add_backfill_command(commands)

    db = _actions(
        commands,
        "db",
        help="manage slabot's database",
        description="Manage the database named by DATABASE_URL "
        "(default: sqlite:///slabot.db, a SQLite file in the working directory).",
    )
    add_command(
        db,
        "upgrade",
        _db_upgrade,
        help="apply the database migrations (safe to repeat)",
        description="Create or migrate the database to the newest schema; a database "
        "already there is left as it is.",
    )

    recompute_cmd = add_command(
        commands,
        "recompute",
        _recompute,
        help="re-evaluate stored open tickets against a changed policy",
        description="Re-evaluate every open ticket of the policy's name stored in the database "
        "named by DATABASE_URL against the policy file; print per ticket what changes (priority, "
        "each target's due instant and state), then store it and owe the helpdesks the writes "
        "that differ, unless --dry-run.",
    )
    recompute_target = recompute_cmd.add_mutually_exclusive_group(required=True)
    recompute_target.add_argument("--policy", metavar="FILE", help="policy file")
    recompute_target.add_argument(
        "--routing",
        metavar="CONFIG",
        help="route every open ticket again by this config's routing: rules (to the policies "
        "its service.policies loads): which move to which policy, and what changes",
    )
    recompute_cmd.add_argument(
        "--dry-run", action="store_true", help="print the changes, store nothing"
    )
    _now_option(recompute_cmd)

    from slabot.reports_cli import add_commands as add_report_commands

    add_report_commands(commands)  # slabot report, slabot credits

    run_cmd = add_command(
        commands,
        "run",
        _run,
        help="serve the webhooks, Slack, the dashboard and the scheduled jobs",
        description="Run the service: migrate the database named by DATABASE_URL, then serve "
        "POST /webhooks/zendesk, /webhooks/jira and /slack/events, /healthz, /readyz, "
        "/metrics and the dashboard at /, and run the scheduled jobs (in one replica of "
        "several on PostgreSQL). Settings: the environment and config/slabot.yaml "
        "(SLABOT_CONFIG names another file); see docs/deploy.md.",
    )
    run_cmd.add_argument(
        "--host",
        help="address to listen on (default: service.host, 127.0.0.1); any address but a "
        "loopback one needs SLABOT_DASHBOARD_TOKEN (or a dashboard user and password)",
    )
    run_cmd.add_argument("--port", type=int, help="port to listen on (default: service.port, 8000)")

    doctor_cmd = add_command(
        commands,
        "doctor",
        _doctor,
        help="probe each credential and permission slabot needs, and say what to fix",
        description="With the settings `slabot run` reads (the environment and "
        "config/slabot.yaml), ask Zendesk, Jira and Slack whether slabot's credentials, role, "
        "permissions, custom fields, channels and user groups are right. Each check prints "
        "OK, WARN, FAIL or INFO with what to fix; the exit status is 1 if any failed. "
        "Secrets are never printed; see docs/operations.md.",
    )
    doctor_cmd.add_argument(
        "--format", choices=("text", "json"), default="text", help="output format"
    )

    docs_target = add_command(
        commands,
        "config-docs",
        _config_docs,
        help="print the configuration reference (docs/configuration.md)",
        description="Render every setting of the environment, config/slabot.yaml and policy "
        "files (type, default, description, environment variable) from the models, as "
        "Markdown: printed, written with --output, or compared with --check (exit 1 when "
        "the file is out of date).",
    ).add_mutually_exclusive_group()
    docs_target.add_argument("--output", metavar="FILE", help="write the reference to FILE")
    docs_target.add_argument(
        "--check", metavar="FILE", help="exit 1 when FILE is not what would be written"
    )

    outbox = _actions(
        commands,
        "outbox",
        help="list and replay the writes slabot owes (the outbox)",
        description="The outbox of the database named by DATABASE_URL: what slabot owes "
        "Zendesk, Jira and Slack, and what it gave up on (dead letters). See "
        "docs/operations.md.",
    )
    list_cmd = add_command(
        outbox,
        "list",
        _outbox_list,
        help="list pending items, or dead letters with --dead",
        description="One line per item: id, target system, ticket, kind, attempts, when it is "
        "due (or its error), oldest first.",
    )
    list_cmd.add_argument("--dead", action="store_true", help="only the dead letters")
    list_cmd.add_argument(
        "--target", choices=("zendesk", "jira", "slack"), help="only this target system"
    )
    list_cmd.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    add_command(
        outbox,
        "replay",
        _outbox_replay,
        help="make dead letters due again (after fixing their cause)",
        description="Make each dead item due now; the service's flusher sends it at its next "
        "run. Attempts keep counting.",
    ).add_argument("ids", nargs="+", type=int, metavar="ID")

    demo_cmd = add_command(
        commands,
        "demo",
        _demo,
        help="the whole flow on this machine, with fake Zendesk, Jira and Slack",
        description="Start the service on SQLite with local fake Zendesk, Jira and Slack, play "
        "a support morning on an accelerated clock (webhooks, decisions, write-back, nudges, "
        "a reclassification, a breach, a digest), print what each system received, then "
        "serve the dashboard until Ctrl-C. No accounts needed.",
    )
    demo_cmd.add_argument(
        "--once", action="store_true", help="run the scripted flow, print, and exit"
    )
    demo_cmd.add_argument("--port", type=int, default=8000, help="dashboard port (default 8000)")
    demo_cmd.add_argument(
        "--database", metavar="FILE", help="SQLite file to keep (default: a temporary one)"
    )
    return parser


def _actions(commands: Any, name: str, **texts: str) -> Any:
    """The sub-command ``name`` whose own sub-commands are ACTIONs (``slabot db upgrade``)."""
    command = add_command(commands, name, None, **texts)
    return command.add_subparsers(dest=f"{name}_command", required=True, metavar="ACTION")


def _now_option(command: argparse.ArgumentParser) -> None:
    command.add_argument("--now", help="ISO 8601 instant for states (default: now)")


def _ticket_argument(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "ticket", metavar="TICKET_JSON", help="the ticket as JSON text, a file holding it, or -"
    )


def _now(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        return parse_instant(text, "--now")
    except SlabotError as error:
        raise UsageError(str(error)) from None


def _check_config(args: argparse.Namespace) -> int:
    from slabot.service.config_check import check_service_config

    failed = False
    for name in args.files:
        if args.kind == "service" or (args.kind == "auto" and _looks_like_service(name)):
            problems = check_service_config(name)
            for problem in problems:
                print(problem, file=sys.stderr)
            if problems:
                failed = True
            else:
                print(f"{name}: ok (service config)")
            continue
        try:
            policy = load_policy(name)
        except PolicyFileError as error:
            failed = True
            for problem in error.problems:
                print(problem, file=sys.stderr)
        else:
            plans = ", ".join(policy.spec.plans)
            print(f"{name}: ok (policy {policy.name}: {', '.join(policy.levels)}; plans {plans})")
    return 1 if failed else 0


def _looks_like_service(name: str) -> bool:
    """Whether the file reads as a service config (an unreadable one is left to the policy
    reader, whose messages say what is wrong)."""
    import yaml

    from slabot.service.config_check import is_service_config

    try:
        return is_service_config(yaml.safe_load(Path(name).read_text(encoding="utf-8")))
    except (OSError, ValueError, yaml.YAMLError, RecursionError):  # ValueError: a bad date
        return False


def _evaluate(args: argparse.Namespace) -> int:
    zone = _zone(args.tz)
    if args.sample:
        paths = [str(p) for p in bundled_policy_paths()]
        now = _now(args.now or SAMPLE_NOW)
        sample = resources.files("slabot").joinpath("samples/tickets.jsonl").read_text("utf-8")
        policies = _load_policies(paths)
        return _evaluate_stream(sample.splitlines(), policies, now, args.format, zone)
    if args.routing and args.policy:
        raise UsageError(
            "evaluate takes --routing CONFIG or --policy FILE, not both (the config's "
            "service.policies names the policies routing chooses from)"
        )
    if not args.policy and not args.routing:
        raise UsageError("evaluate needs --policy FILE or --routing CONFIG (or --sample)")
    router = None
    if args.routing:
        from slabot.routing_files import load_routing

        routing = load_routing(args.routing)
        policies, router = routing.policies, routing.router
    else:
        policies = _load_policies(args.policy)
    now = _now(args.now)
    if args.input == "-":
        # Bad bytes become a per-line error instead of ending the run.
        if isinstance(sys.stdin, io.TextIOWrapper):
            sys.stdin.reconfigure(encoding="utf-8", errors="surrogateescape")
        return _evaluate_stream(sys.stdin, policies, now, args.format, zone, router)
    try:
        source = Path(args.input).open(encoding="utf-8", errors="surrogateescape")  # noqa: SIM115 (closed by the with below)
    except OSError as error:
        raise UsageError(f"{args.input}: cannot read: {error.strerror}") from None
    with source:
        return _evaluate_stream(source, policies, now, args.format, zone, router)


def _zone(name: str) -> tzinfo:
    """The ``--tz`` zone; an unknown name is a usage error naming the flag."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(
            f"--tz {name!r} is not a time zone; use an IANA name such as Europe/Paris or UTC"
        ) from None


def _evaluate_stream(
    lines: Iterable[str],
    policies: dict[str, Policy],
    now: datetime,
    form: str,
    zone: tzinfo = UTC,
    router: Router | None = None,
) -> int:
    results = evaluate_lines(lines, policies, now, router)
    if form == "table":
        return _print_table(results, now, sys.stdout, zone)
    return _print_jsonl(results, sys.stdout)


def _load_policies(paths: Sequence[str]) -> dict[str, Policy]:
    policies: dict[str, Policy] = {}
    for path in paths:
        policy = load_policy(path)
        if policy.name in policies:
            raise UsageError(f"{path}: policy {policy.name!r} is given twice")
        policies[policy.name] = policy
    return policies


Result = tuple[int, Decision | None, dict[str, Any] | None, str | None]
"""(line number, decision, or error object and message) for one input line."""


def evaluate_lines(
    lines: Iterable[str], policies: dict[str, Policy], now: datetime, router: Router | None = None
) -> Iterator[Result]:
    """Evaluate JSON Lines in order; a bad line yields an error object in its place. With
    ``router``, each line's routing fields (source, brand, project...) choose its policy."""
    single = next(iter(policies.values())) if len(policies) == 1 else None
    route = router.route if router is not None else None
    loads = json.loads
    for number, line in enumerate(lines, start=1):
        if not line or line.isspace():  # what ``not line.strip()`` says, without a copy
            continue
        ticket_id = None
        try:
            if not line.isascii():
                try:
                    line.encode("utf-8")
                except UnicodeEncodeError:  # undecodable bytes, kept by surrogateescape
                    raise SlabotError("the line is not valid UTF-8") from None
            try:
                data = loads(line)
            except ValueError as error:
                raise SlabotError(f"not valid JSON: {error}") from None
            except RecursionError:
                raise SlabotError("not a ticket: JSON nested too deeply") from None
            if not isinstance(data, dict):
                raise SlabotError("a ticket must be a JSON object")
            ticket_id = data.get("id")
            if route is not None:
                if "policy" in data:
                    raise SlabotError(
                        "field 'policy' is not used with --routing: the routing rules choose "
                        "the policy; remove it, or evaluate with --policy"
                    )
                policy = policies[route(data).policy]
            else:
                policy = _policy_for(data, policies, single)
            decision = evaluate(Ticket.from_mapping(data), policy, now)
        except SlabotError as error:
            message = str(error)
            yield number, None, {"line": number, "id": ticket_id, "error": message}, message
        else:
            yield number, decision, None, None


def _policy_for(data: dict[str, Any], policies: dict[str, Policy], single: Policy | None) -> Policy:
    name = data.pop("policy", None)
    if name is None:
        if single is None:
            raise SlabotError(
                f"field 'policy' is required when several policies are given "
                f"({', '.join(policies)})"
            )
        return single
    policy = policies.get(name)
    if policy is None:
        raise SlabotError(f"field 'policy' is {name!r}; loaded: {', '.join(policies)}")
    return policy


# One encoder for every line: json.dumps with any non-default option builds a new one per call.
_JSON_LINE = json.JSONEncoder(ensure_ascii=False)


def _print_jsonl(results: Iterable[Result], out: IO[str]) -> int:
    failed = False
    encode = _JSON_LINE.encode
    write = out.write
    for number, decision, error_object, message in results:
        if decision is not None:
            write(decision.as_json_line())
            if decision.unknown_plan is not None:
                _warn_unknown_plan(number, decision)
        else:
            failed = True
            write(encode(error_object) + "\n")
            print(f"slabot: line {number}: {message}", file=sys.stderr)
    out.flush()
    return 1 if failed else 0


_COLUMNS = ("id", "plan", "priority", "commitment", "first response", "restoration", "next update")


def _print_table(results: Iterable[Result], now: datetime, out: IO[str], zone: tzinfo = UTC) -> int:
    """The decisions as a table; every time, the heading's included, in ``zone`` (one zone
    for the whole table, named once in the heading)."""
    rows: list[tuple[str, ...]] = []
    details: list[str] = []
    failed = False
    for number, decision, _, message in results:
        if decision is None:
            failed = True
            rows.append((f"line {number}", "-", "-", "-", "error", "-", "-"))
            details.append(f"line {number}: {message}")
            continue
        if decision.unknown_plan is not None:
            _warn_unknown_plan(number, decision)
        requested = decision.requested_priority
        priority = decision.priority
        if requested and requested != priority:
            priority = f"{requested}->{priority}"
        rows.append(
            (
                decision.ticket_id,
                decision.plan or "-",
                priority,
                decision.commitment or "-",
                *(
                    _cell(decision, name, zone)
                    for name in ("first_response", "restoration", "next_update")
                ),
            )
        )
        if decision.tags:
            details.append(f"{decision.ticket_id}: {', '.join(decision.tags)}")
    widths = [max(len(row[i]) for row in [_COLUMNS, *rows]) for i in range(len(_COLUMNS))]
    local = now.astimezone(zone)
    name = str(getattr(zone, "key", None) or local.tzname() or "UTC")
    out.write(f"Decisions as of {local:%Y-%m-%d %H:%M} (all times in {name})\n\n")
    for row in [_COLUMNS, tuple("-" * w for w in widths), *rows]:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        out.write("\n")
    if details:
        out.write("\nTags and errors:\n")
        out.writelines(f"  {line}\n" for line in details)
    out.flush()
    return 1 if failed else 0


def _warn_unknown_plan(number: int, decision: Decision) -> None:
    """A line evaluated although its plan is not in the policy: evaluated as the service
    evaluates it (stored, tagged, noted; never refused), and said on standard error so that
    a typo in the input does not pass unseen. The exit status stays 0."""
    print(
        f"slabot: line {number}: warning: ticket {decision.ticket_id}: "
        f"{decision.unknown_plan_note}",
        file=sys.stderr,
    )


def _cell(decision: Decision, name: str, zone: tzinfo = UTC) -> str:
    target = decision.targets[name]
    if target.state == "none":
        return "-"
    due = f"{target.due.astimezone(zone):%a %d %b %H:%M}" if target.due else "(paused)"
    return f"{due} {target.state}"


def _explain(args: argparse.Namespace) -> int:
    policy = load_policy(args.policy)
    data = _ticket_json(args.ticket)
    data.pop("policy", None)
    sys.stdout.write(explain(Ticket.from_mapping(data), policy, _now(args.now)))
    return 0


def _ticket_json(given: str) -> dict[str, Any]:
    """TICKET_JSON: JSON text, a file holding it, or - (standard input)."""
    text = given
    if text == "-":
        text = sys.stdin.read()
    elif not text.lstrip().startswith("{"):
        try:
            text = Path(text).read_text(encoding="utf-8")
        except OSError as error:
            raise UsageError(f"{given}: cannot read: {error.strerror}") from None
    try:
        data = json.loads(text)
    except ValueError as error:
        raise UsageError(f"TICKET_JSON is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise UsageError("TICKET_JSON must be a JSON object")
    return data


def _routes_explain(args: argparse.Namespace) -> int:
    from slabot.routing_files import load_routing

    routing = load_routing(args.config)
    data = _ticket_json(args.ticket)
    verdicts = routing.router.explain(data)
    name = data.get("id") or "the ticket"
    out = sys.stdout
    out.write(f"Routing {name} by {args.config}:\n")
    for number, verdict in enumerate(verdicts, start=1):
        outcome = "matches" if verdict.matched else "does not match"
        out.write(f"  {number}. {verdict.rule!r} (policy {verdict.policy}): {outcome}\n")
        for reason in verdict.reasons:
            out.write(f"       {reason}\n")
    chosen = verdicts[-1]
    title = routing.policies[chosen.policy].spec.title or chosen.policy
    out.write(f"=> policy {chosen.policy} ({title}), by rule {chosen.rule!r}\n")
    return 0


def _db_upgrade(args: argparse.Namespace) -> int:
    # Imported here: the engine-only commands should not pay for loading SQLAlchemy.
    from slabot.store.db import make_engine, redact
    from slabot.store.migrate import current_revision, upgrade

    engine = make_engine()
    try:
        before = current_revision(engine)
        after = upgrade(engine)
    finally:
        engine.dispose()
    where = redact(engine.url)
    if before == after:
        print(f"database {where}: already at revision {after} (the newest)")
    else:
        print(f"database {where}: upgraded from {before or 'an empty database'} to {after}")
    return 0


def _recompute(args: argparse.Namespace) -> int:
    from slabot.store.db import make_engine
    from slabot.store.services import TicketService

    if args.routing:
        from slabot.routing_files import load_routing

        routing = load_routing(args.routing)
        policies, router, policy_name = routing.policies, routing.router, None
        label = f"routing {args.routing}"
    else:
        policy = load_policy(args.policy)
        policies, router, policy_name = {policy.name: policy}, None, policy.name
        label = f"policy {policy.name}"
    now = _now(args.now)
    engine = make_engine()
    try:
        require_schema(engine, name_revision=True)
        service = TicketService(engine, policies, lambda: now, router=router)
        tickets = changed = failed = 0
        with database_errors(engine), _progress(engine, policy_name) as (bar, say):
            for result in service.recompute(policy_name, dry_run=args.dry_run):
                tickets += 1
                bar.update()
                if result.error is not None:
                    failed += 1
                    say(f"{result.ticket}  error: {result.error}")
                elif result.changes:
                    changed += 1
                    for line in result.changes:
                        say(f"{result.ticket}  {line}")
    finally:
        engine.dispose()
    verb = "would change" if args.dry_run else "changed"
    outcome = "dry run: nothing stored" if args.dry_run else "applied"
    print(
        f"{label}: {tickets} open tickets, {changed} {verb}, "
        f"{tickets - changed - failed} unchanged, {failed} failed; {outcome}"
    )
    return 1 if failed else 0


@contextlib.contextmanager
def _progress(engine: Any, policy_name: str | None) -> Iterator[tuple[Any, Callable[[str], None]]]:
    """A progress bar on standard error over the policy's open tickets (None: every open
    ticket, as routing goes through them), and how to print a
    line to standard output under it; no bar (and no count query) when standard error is not
    a terminal, so piped and logged output stays the lines alone."""
    from tqdm import tqdm

    shown = sys.stderr.isatty()
    total = None
    if shown:
        from slabot.store.recompute import open_tickets

        total = open_tickets(engine, policy_name)
    with tqdm(
        total=total,
        disable=not shown,
        desc=f"recompute {policy_name or 'routes'}",
        unit=" tickets",
        mininterval=0.5,
        file=sys.stderr,
    ) as bar:

        def say(line: str) -> None:
            if shown:
                bar.write(line, file=sys.stdout)  # above the bar, which is redrawn
            else:
                print(line)

        yield bar, say


def _config_docs(args: argparse.Namespace) -> int:
    from slabot.config_docs import run

    return run(args, sys.stdout, sys.stderr)


def _outbox(args: argparse.Namespace) -> Any:
    """The outbox of the migrated database named by DATABASE_URL."""
    from slabot.store.db import make_engine
    from slabot.store.outbox import Outbox

    engine = make_engine()
    require_schema(engine)
    return Outbox(engine, lambda: datetime.now(UTC))


def _outbox_list(args: argparse.Namespace) -> int:
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from slabot.store.models import OutboxItem

    outbox = _outbox(args)
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    query = select(OutboxItem).where(OutboxItem.done_at.is_(None))
    if args.dead:
        query = query.where(OutboxItem.next_attempt_at.is_(None))
    if args.target:
        query = query.where(OutboxItem.target_system == args.target)
    try:
        with database_errors(outbox.engine), Session(outbox.engine) as session:
            rows = list(session.scalars(query.order_by(OutboxItem.id).limit(args.limit)))
            shown = [_outbox_line(row) for row in rows]
    finally:
        outbox.engine.dispose()
    what = "dead letters" if args.dead else "items owed"
    for line in shown:
        print(line)
    print(
        f"{len(shown)} {what}" + (f" (the first {args.limit})" if len(shown) == args.limit else "")
    )
    return 0


def _outbox_line(row: Any) -> str:
    state = (
        f"dead: {row.last_error}"
        if row.next_attempt_at is None
        else f"due {row.next_attempt_at.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z"
        + (f" (last error: {row.last_error})" if row.last_error else "")
    )
    ticket = row.ticket_id if row.ticket_id is not None else "-"
    return (
        f"{row.id}  {row.target_system}  ticket {ticket}  {row.kind}  "
        f"attempts {row.attempts}  {state}"
    )


def _outbox_replay(args: argparse.Namespace) -> int:
    outbox = _outbox(args)
    failed = False
    try:
        for item_id in args.ids:
            if outbox.replay(item_id):
                print(f"{item_id}: replayed; the next flush sends it")
            else:
                failed = True
                print(
                    f"slabot: outbox item {item_id} is not a dead letter (no such item, "
                    "already sent, or still being retried): see `slabot outbox list`",
                    file=sys.stderr,
                )
    finally:
        outbox.engine.dispose()
    return 1 if failed else 0


def _demo(args: argparse.Namespace) -> int:
    from slabot.demo.flow import main as demo

    return demo(args.once, args.port, args.database)


def _doctor(args: argparse.Namespace) -> int:
    from slabot.service.doctor import failed, render, run_checks
    from slabot.service.settings import load_settings

    checks = run_checks(load_settings())
    print(render(checks, args.format))
    return 1 if failed(checks) else 0


def _run(args: argparse.Namespace) -> int:
    from slabot.service.server import run

    return run(args.host, args.port)


if __name__ == "__main__":
    raise SystemExit(main())
