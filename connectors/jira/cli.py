"""``slabot backfill jira``: import Jira's issue history through the JQL search."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from datetime import UTC, datetime

from connectors.cli import (
    BackfillError,
    backfill_policies,
    backfill_router,
    finish_backfill,
    migrated_engine,
    parse_since,
    progress_bar,
    resumed_note,
)


def backfill(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    from connectors.jira.client import JiraClient
    from connectors.jira.config import load_jira_config
    from connectors.jira.poller import JiraPoller
    from connectors.jira.settings import JiraSettings
    from connectors.jira.sync import JiraSync
    from connectors.jira.writeback import JiraWriter
    from slabot.store.outbox import Outbox
    from slabot.store.services import TicketService

    env = os.environ if environ is None else environ
    since = parse_since(args.since)
    settings = JiraSettings.from_environ(env, webhooks=False)
    config = load_jira_config(args.config)
    policies = backfill_policies(args, "jira", config.policy)
    engine = migrated_engine(env)
    try:
        router = backfill_router(args, policies)
        if router is None and config.policy is None:
            raise BackfillError(
                f"{args.config}: jira.policy is not set and there is no routing: section"
            )
        tickets = TicketService(
            engine, policies, lambda: datetime.now(UTC), origin="jira", router=router
        )
        client = JiraClient(settings, config)
        poller = JiraPoller(client, JiraSync(client, config, tickets))
        with progress_bar("jira", "issues") as update:
            report = poller.backfill(
                since, progress=lambda _, done: update(done.issues, done.pages)
            )
        if report.resumed:
            resumed_note("jira", since)
        print(
            f"jira: {report.issues} issues read in {report.pages} pages since "
            f"{since:%Y-%m-%d %H:%M} UTC, {report.applied} applied, {report.failed} failed, "
            f"{report.enqueued} writes owed"
        )
        status = finish_backfill("jira", report.errors, report.error)
        if args.write:
            outbox = Outbox(engine, lambda: datetime.now(UTC))
            written = JiraWriter(client, config, outbox).flush("backfill")
            print(
                f"jira: {written.sent} writes sent to {written.issues} issues in "
                f"{written.write_calls} calls, {written.retrying} to retry, {written.dead} refused"
            )
    finally:
        engine.dispose()
    return status
