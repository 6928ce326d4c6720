"""``slabot backfill zendesk``: import Zendesk's ticket history through the export."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import TYPE_CHECKING

from connectors.cli import BackfillError, BackfillParts, HelpdeskBackfill, parse_since, run_backfill

if TYPE_CHECKING:
    from connectors.zendesk.config import ZendeskConfig
    from connectors.zendesk.settings import ZendeskSettings
    from slabot.store.services import TicketService

__all__ = ["BACKFILL", "BackfillError", "backfill", "parse_since"]


def _settings(environ: Mapping[str, str]) -> ZendeskSettings:
    from connectors.zendesk.settings import ZendeskSettings

    return ZendeskSettings.from_environ(environ, webhooks=False)


def _config(path: str) -> ZendeskConfig:
    from connectors.zendesk.config import load_zendesk_config

    return load_zendesk_config(path)


def _connect(
    settings: ZendeskSettings, config: ZendeskConfig, tickets: TicketService
) -> BackfillParts:
    from connectors.zendesk.client import ZendeskClient
    from connectors.zendesk.poller import ZendeskPoller
    from connectors.zendesk.sync import ZendeskSync
    from connectors.zendesk.writeback import ZendeskWriter

    client = ZendeskClient(settings)
    return BackfillParts(
        ZendeskPoller(client, ZendeskSync(client, config, tickets)),
        lambda outbox: ZendeskWriter(client, config, outbox),
    )


BACKFILL = HelpdeskBackfill(
    source="zendesk",
    unit="tickets",
    settings=_settings,
    config=_config,
    connect=_connect,
    read=lambda report: report.tickets,
    skipped="skipped as deleted",
)


def backfill(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    return run_backfill(BACKFILL, args, environ)
