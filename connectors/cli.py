"""``slabot backfill SOURCE --since DATE``: the connectors' command-line entries.

Each source names the module and function that run it, imported only when called, so the
engine-only commands never load an SDK. Jira adds its entry to ``BACKFILLS``.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

BACKFILLS = {"zendesk": "connectors.zendesk.cli:backfill"}


def add_backfill_command(commands: Any) -> None:
    """Add ``backfill`` to the ``slabot`` sub-commands (``commands`` is argparse's)."""
    backfill = commands.add_parser(
        "backfill",
        help="import a helpdesk's ticket history into the database",
        description="Import every ticket updated since DATE through the helpdesk's "
        "incremental export into the database named by DATABASE_URL (run `slabot db "
        "upgrade` first), evaluating each; polling then continues from where it ended. "
        "Credentials come from the environment (docs/zendesk.md).",
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
