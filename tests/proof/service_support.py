"""The service's ASGI app in this process, over a SQLite database the tests can watch.

``serve_in_process()`` builds the app as ``slabot run`` wires it (settings from the demo's
environment and config, the fake Zendesk, Jira and Slack on loopback) and drives it with
Starlette's test client, its lifespan (the webhook workers) running. ``Target.send`` posts
a request and checks what every answer must satisfy: below 500, a 4xx says why, and a
refused request commits nothing to the database.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from slabot.demo.environment import DemoSystems, start_systems, write_config
from slabot.service.app import create_app
from slabot.service.runtime import build_runtime
from slabot.service.settings import load_settings
from slabot.store.migrate import upgrade

START = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)


class DatabaseWatch:
    """Whether anything was committed to the SQLite database since the last look."""

    def __init__(self, path: Path) -> None:
        self.connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.tables = [
            name
            for (name,) in self.connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]

    def state(self) -> tuple[int, tuple[int, ...]]:
        """(PRAGMA data_version: changes when another connection commits, row counts)."""
        (version,) = self.connection.execute("PRAGMA data_version").fetchone()
        counts = tuple(
            int(self.connection.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])
            for table in self.tables
        )
        return int(version), counts

    def digest(self) -> str:
        """A hash of every row of every table (for a before/after over a whole run)."""
        hasher = hashlib.sha256()
        for table in self.tables:
            for row in self.connection.execute(f'SELECT * FROM "{table}" ORDER BY rowid'):
                hasher.update(repr(row).encode())
        return hasher.hexdigest()


@dataclass
class Target:
    client: TestClient
    database: DatabaseWatch
    systems: DemoSystems

    def send(self, path: str, headers: dict[str, str], body: bytes) -> Any:
        before = self.database.state()
        response = self.client.post(path, content=body, headers=headers)
        assert response.status_code < 500, (response.status_code, response.text, body[:200])
        if 400 <= response.status_code < 500:
            assert response.text.strip(), f"a bare {response.status_code}"
            after = self.database.state()
            assert after == before, (
                f"a refused request ({response.status_code} {response.text[:200]}) changed the "
                f"database: {before} -> {after}"
            )
        return response


@contextmanager
def serve_in_process(folder: Path, **extra: str) -> Iterator[Target]:
    """The app over a fresh database in ``folder``; ``extra`` adds environment settings."""
    systems = start_systems(START)
    database = folder / "slabot.db"
    environ = systems.environ(f"sqlite:///{database}", write_config(folder / "slabot.yaml"), extra)
    runtime = build_runtime(
        load_settings(environ),
        lambda: START,
        client_options={
            "zendesk": {"timeout": 2.0},
            "jira": {"timeout": 2.0},
            "slack": {"timeout": 2},
            # Every signed, well-formed delivery is accepted: none may be refused as busy.
            "zendesk_intake": {"maxsize": 100_000, "retry_delay": 0.0},
            "jira_intake": {"maxsize": 100_000, "retry_delay": 0.0},
        },
    )
    upgrade(runtime.engine)
    try:
        with TestClient(create_app(runtime), raise_server_exceptions=False) as client:
            yield Target(client, DatabaseWatch(database), systems)
    finally:
        runtime.close()
        systems.stop()
