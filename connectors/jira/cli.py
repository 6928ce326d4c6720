"""``slabot backfill jira``: import Jira's issue history through the JQL search."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import TYPE_CHECKING

from connectors.cli import BackfillParts, HelpdeskBackfill, run_backfill

if TYPE_CHECKING:
    from connectors.jira.config import JiraConfig
    from connectors.jira.settings import JiraSettings
    from slabot.store.services import TicketService

__all__ = ["BACKFILL", "backfill"]


def _settings(environ: Mapping[str, str]) -> JiraSettings:
    from connectors.jira.settings import JiraSettings

    return JiraSettings.from_environ(environ, webhooks=False)


def _config(path: str) -> JiraConfig:
    from connectors.jira.config import load_jira_config

    return load_jira_config(path)


def _connect(settings: JiraSettings, config: JiraConfig, tickets: TicketService) -> BackfillParts:
    from connectors.jira.client import JiraClient
    from connectors.jira.poller import JiraPoller
    from connectors.jira.sync import JiraSync
    from connectors.jira.writeback import JiraWriter

    client = JiraClient(settings, config)
    return BackfillParts(
        JiraPoller(client, JiraSync(client, config, tickets)),
        lambda outbox: JiraWriter(client, config, outbox),
    )


BACKFILL = HelpdeskBackfill(
    source="jira",
    unit="issues",
    settings=_settings,
    config=_config,
    connect=_connect,
    read=lambda report: report.issues,
)


def backfill(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    return run_backfill(BACKFILL, args, environ)
