"""``slabot backfill SOURCE --since DATE``: one backfill driver over each helpdesk's description.

Each source names the module and function that run it, imported only when called, so the
engine-only commands never load an SDK. That function hands ``run_backfill`` its
``HelpdeskBackfill``: how to read the helpdesk's settings and config, and how to build its
poller and writer over a ``TicketService``; the driver does the rest alike for every
helpdesk (the policies and routing, the migrated database, the progress bar, resuming, the
summary lines and the exit status).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from bot.errors import SlabotError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from bot.compiled import Policy
    from bot.routing import Router
    from connectors.writeback import WriteReport
    from slabot.store.outbox import Outbox
    from slabot.store.services import TicketService

BACKFILLS = {
    "zendesk": "connectors.zendesk.cli:backfill",
    "jira": "connectors.jira.cli:backfill",
}


SOME_FAILED = 3
"""The exit status of a backfill that read everything but could not apply some tickets
(each named on standard error); 1 means it could not start or stopped early, 0 that every
ticket was applied (or skipped as deleted)."""


class BackfillError(SlabotError):
    """The backfill cannot start (a bad date, a database not migrated)."""


class BackfillReport(Protocol):
    """What a connector's poller reports of a backfill (its ``PollReport``)."""

    pages: int
    applied: int
    failed: int
    skipped: int
    enqueued: int
    error: str | None
    errors: list[str]
    resumed: bool


class BackfillPoller(Protocol):
    def backfill(
        self, since: datetime, *, progress: Callable[[Any, Any], None] | None = None
    ) -> Any: ...


class BackfillWriter(Protocol):
    def flush(self, worker_id: str) -> WriteReport: ...


@dataclass(frozen=True, slots=True)
class BackfillParts:
    """A helpdesk's poller over the backfill's ``TicketService``, and how to build its
    writer over an outbox (``--write``)."""

    poller: BackfillPoller
    writer: Callable[[Outbox], BackfillWriter]


@dataclass(frozen=True, slots=True)
class HelpdeskBackfill:
    """What ``run_backfill`` needs to know of one helpdesk (``connectors/<name>/cli.py``)."""

    source: str
    """``zendesk``: the command's SOURCE, the config section, the store's source."""
    unit: str
    """What the helpdesk calls a ticket, plural: ``tickets``, ``issues``."""
    settings: Callable[[Mapping[str, str]], Any]
    """The credentials from the environment (webhooks not needed)."""
    config: Callable[[str], Any]
    """The helpdesk's section of the config file (it has a ``policy``)."""
    connect: Callable[[Any, Any, TicketService], BackfillParts]
    """The poller and the writer, from the settings, the config and the tickets."""
    read: Callable[[Any], int]
    """The tickets a report says were read (``report.tickets``, ``report.issues``)."""
    skipped: str | None = None
    """How the summary names the tickets the report skips (None: the helpdesk skips none)."""


def run_backfill(
    helpdesk: HelpdeskBackfill, args: argparse.Namespace, environ: Mapping[str, str] | None
) -> int:
    """``slabot backfill <helpdesk.source>``: import every ticket updated since ``--since``,
    a page per transaction, then (``--write``) send the writes owed; the exit status."""
    from slabot.store.outbox import Outbox
    from slabot.store.services import TicketService

    source, unit = helpdesk.source, helpdesk.unit
    env = os.environ if environ is None else environ
    since = parse_since(args.since)
    settings = helpdesk.settings(env)
    config = helpdesk.config(args.config)
    policies = backfill_policies(args, source, config.policy)
    engine = migrated_engine(env)
    try:
        router = backfill_router(args, policies)
        if router is None and config.policy is None:
            raise BackfillError(
                f"{args.config}: {source}.policy is not set and there is no routing: section"
            )
        tickets = TicketService(
            engine, policies, lambda: datetime.now(UTC), origin=source, router=router
        )
        parts = helpdesk.connect(settings, config, tickets)
        with progress_bar(source, unit) as update:
            report: BackfillReport = parts.poller.backfill(
                since, progress=lambda _, done: update(helpdesk.read(done), done.pages)
            )
        if report.resumed:
            resumed_note(source, since)
        skipped = "" if helpdesk.skipped is None else f"{report.skipped} {helpdesk.skipped}, "
        print(
            f"{source}: {helpdesk.read(report)} {unit} read in {report.pages} pages since "
            f"{since:%Y-%m-%d %H:%M} UTC, {report.applied} applied, {report.failed} failed, "
            f"{skipped}{report.enqueued} writes owed"
        )
        status = finish_backfill(source, report.errors, report.error)
        if args.write:
            outbox = Outbox(engine, lambda: datetime.now(UTC))
            written = parts.writer(outbox).flush("backfill")
            print(
                f"{source}: {written.sent} writes sent to {written.tickets} {unit} in "
                f"{written.write_calls} calls, {written.retrying} to retry, {written.dead} refused"
            )
    finally:
        engine.dispose()
    return status


def finish_backfill(source: str, failures: Sequence[str], stopped: str | None) -> int:
    """Name each ticket that was not applied, and why, on standard error (the log has the
    same lines), and say whether the backfill stopped early; the command's exit status.

    A failed ticket does not stop a backfill: it is counted in the summary line, listed
    here, and the status (``SOME_FAILED``) tells an operator's script to look.
    """
    for problem in failures:
        print(f"{source}: not applied: {problem}", file=sys.stderr)
    if stopped is not None:
        print(
            f"{source}: stopped early: {stopped}; run the backfill again to resume",
            file=sys.stderr,
        )
        return 1
    if failures:
        print(
            f"{source}: {len(failures)} not applied (listed above); fix their cause and run "
            "the backfill again, or let the next change bring them in",
            file=sys.stderr,
        )
        return SOME_FAILED
    return 0


@contextmanager
def progress_bar(source: str, unit: str) -> Iterator[Callable[[int, int], None]]:
    """A bar on standard error for a backfill: ``update(read, pages)`` after each page.
    Quiet when standard error is not a terminal (a cron job, a log file): the summary line
    says it all there. The export does not say how many tickets it holds, so the bar counts
    and shows the rate."""
    from tqdm import tqdm

    bar = tqdm(
        desc=f"{source} backfill",
        unit=f" {unit}",
        file=sys.stderr,
        disable=not sys.stderr.isatty(),
        dynamic_ncols=True,
    )

    def update(read: int, pages: int) -> None:
        bar.update(read - bar.n)
        bar.set_postfix_str(f"{pages} pages", refresh=False)

    try:
        yield update
    finally:
        bar.close()


def resumed_note(source: str, since: datetime) -> None:
    """Say on standard error that this backfill went on from where the last one stopped."""
    print(
        f"{source}: resumed the backfill since {since:%Y-%m-%d %H:%M} UTC where the last one "
        "stopped; the counts below are this run's",
        file=sys.stderr,
    )


def parse_since(text: str) -> datetime:
    """``2026-01-31`` (midnight UTC) or an ISO 8601 instant with an offset."""
    value = text.strip()
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BackfillError(
            f"--since {text!r} is not a date; use YYYY-MM-DD or an ISO 8601 instant"
        ) from None
    if len(value) == 10 or parsed.tzinfo is None:
        if len(value) != 10:
            raise BackfillError(f"--since {text!r} needs an offset, like 2026-01-31T09:00:00Z")
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def backfill_policies(
    args: argparse.Namespace, section: str, policy: str | None
) -> dict[str, Policy]:
    """The policies a backfill evaluates with; the connector's ``policy`` must be among them."""
    from slabot.policy_files import bundled_policy_paths, load_policy

    paths = args.policy or [str(p) for p in bundled_policy_paths()]
    policies = {loaded.name: loaded for loaded in (load_policy(p) for p in paths)}
    if policy is not None and policy not in policies:
        raise BackfillError(
            f"{args.config}: {section}.policy is {policy!r}, but the policies loaded are "
            f"{', '.join(sorted(policies))}; pass its file with --policy"
        )
    return policies


def backfill_router(args: argparse.Namespace, policies: dict[str, Policy]) -> Router | None:
    """The routing rules of the config file (``--config``), over the policies loaded; None
    when it has no ``routing:`` section (each helpdesk's ``policy`` then applies)."""
    import yaml

    from slabot.policy_files import PolicyFileError
    from slabot.routing_files import SECTION, parse_routing

    path = str(args.config)
    try:
        text = Path(path).read_text(encoding="utf-8")
        data = yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as error:
        raise BackfillError(f"{path}: cannot read the routing rules: {error}") from None
    if not isinstance(data, dict) or SECTION not in data:
        return None
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is None:
        return None
    try:
        routing = parse_routing(data[SECTION], root, path, policies)
    except PolicyFileError as error:
        raise BackfillError(str(error)) from None
    return routing.router


def migrated_engine(env: Mapping[str, str]) -> Engine:
    """The engine for ``DATABASE_URL``, refused (and disposed) unless it is fully migrated."""
    from slabot.store.db import make_engine, redact
    from slabot.store.migrate import current_revision, head_revision

    engine = make_engine(env.get("DATABASE_URL") or None)
    try:
        at, head = current_revision(engine), head_revision()
        if at != head:
            raise BackfillError(
                f"database {redact(engine.url)} is not at revision {head}: run "
                "`slabot db upgrade` first"
            )
    except BaseException:
        engine.dispose()
        raise
    return engine


def add_backfill_command(commands: Any) -> None:
    """Add ``backfill`` to the ``slabot`` sub-commands (``commands`` is argparse's)."""
    backfill = commands.add_parser(
        "backfill",
        help="import a helpdesk's ticket history into the database",
        description="Import every ticket updated since DATE through the helpdesk's "
        "incremental export (Zendesk) or JQL search (Jira) into the database named by "
        "DATABASE_URL (run `slabot db upgrade` first), evaluating each, a page per "
        "transaction; polling then continues from where it ended. An interrupted backfill "
        "run again with the same --since resumes at the page where it stopped. Credentials "
        "come from the environment (docs/zendesk.md, docs/jira.md).",
    )
    backfill.add_argument("source", choices=sorted(BACKFILLS), help="the helpdesk")
    backfill.add_argument(
        "--since", required=True, metavar="DATE", help="YYYY-MM-DD (UTC) or an ISO 8601 instant"
    )
    backfill.add_argument(
        "--config",
        default="config/slabot.yaml",
        metavar="FILE",
        help="slabot's config file (default: config/slabot.yaml)",
    )
    backfill.add_argument(
        "--policy",
        action="append",
        default=[],
        metavar="FILE",
        help="policy file; repeat for several (default: the bundled policies)",
    )
    backfill.add_argument(
        "--write",
        action="store_true",
        help="also send the owed writes (priority, tags, due dates) to the helpdesk now",
    )
    backfill.set_defaults(handler=_run_backfill)


def _run_backfill(args: argparse.Namespace) -> int:
    module, _, name = BACKFILLS[args.source].partition(":")
    handler = getattr(importlib.import_module(module), name)
    return int(handler(args))
