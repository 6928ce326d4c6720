"""``slabot backfill zendesk``: import Zendesk's ticket history through the export."""

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

__all__ = ["BackfillError", "backfill", "parse_since"]


def backfill(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    from connectors.zendesk.client import ZendeskClient
    from connectors.zendesk.config import load_zendesk_config
    from connectors.zendesk.poller import ZendeskPoller
    from connectors.zendesk.settings import ZendeskSettings
    from connectors.zendesk.sync import ZendeskSync
    from connectors.zendesk.writeback import ZendeskWriter
    from slabot.store.outbox import Outbox
    from slabot.store.services import TicketService

    env = os.environ if environ is None else environ
    since = parse_since(args.since)
    settings = ZendeskSettings.from_environ(env, webhooks=False)
    config = load_zendesk_config(args.config)
    policies = backfill_policies(args, "zendesk", config.policy)
    engine = migrated_engine(env)
    try:
        router = backfill_router(args, policies)
        if router is None and config.policy is None:
            raise BackfillError(
                f"{args.config}: zendesk.policy is not set and there is no routing: section"
            )
        tickets = TicketService(
            engine, policies, lambda: datetime.now(UTC), origin="zendesk", router=router
        )
        client = ZendeskClient(settings)
        poller = ZendeskPoller(client, ZendeskSync(client, config, tickets))
        with progress_bar("zendesk", "tickets") as update:
            report = poller.backfill(
                since, progress=lambda _, done: update(done.tickets, done.pages)
            )
        if report.resumed:
            resumed_note("zendesk", since)
        print(
            f"zendesk: {report.tickets} tickets read in {report.pages} pages since "
            f"{since:%Y-%m-%d %H:%M} UTC, {report.applied} applied, {report.failed} failed, "
            f"{report.skipped} skipped as deleted, {report.enqueued} writes owed"
        )
        status = finish_backfill("zendesk", report.errors, report.error)
        if args.write:
            outbox = Outbox(engine, lambda: datetime.now(UTC))
            written = ZendeskWriter(client, config, outbox).flush("backfill")
            print(
                f"zendesk: {written.sent} writes sent to {written.tickets} tickets in "
                f"{written.write_calls} calls, {written.retrying} to retry, {written.dead} refused"
            )
    finally:
        engine.dispose()
    return status
