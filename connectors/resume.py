"""Where an interrupted ``slabot backfill`` stopped, so that running it again resumes there.

Kept in the ``poll_cursors`` table beside the pollers' own cursors, as stream
``backfill:<stream>`` of the source: ``{"since": ..., "cursor": ..., "complete": ...}``
in JSON, written after each page is applied (the page's transaction is committed first),
so the page it names is the first one not applied to its end. A backfill run again with
the same ``--since`` resumes from that page while the last run did not reach the end;
another ``--since``, or a backfill that had finished, starts from ``--since``. Pages
applied twice change nothing the second time (ingest is idempotent).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine

from slabot.store import queries


def backfill_stream(stream: str) -> str:
    """The ``poll_cursors`` stream of a backfill of ``stream``."""
    return f"backfill:{stream}"


@dataclass(frozen=True, slots=True)
class BackfillMark:
    """How far a backfill since ``since`` got: ``cursor`` is the helpdesk's own (Zendesk's
    export cursor; for Jira, the ``updated`` time of the newest issue applied)."""

    since: datetime
    cursor: str
    complete: bool

    def text(self) -> str:
        return json.dumps(
            {"since": self.since.isoformat(), "cursor": self.cursor, "complete": self.complete}
        )


def resumable(engine: Engine, source: str, stream: str, since: datetime) -> BackfillMark | None:
    """The mark of a backfill since ``since`` that stopped before the end (None: there is
    none to resume; a mark another version wrote, or of another ``since``, counts as none)."""
    text = queries.load_cursor(engine, source, backfill_stream(stream))
    if not text:
        return None
    try:
        data = json.loads(text)
        mark = BackfillMark(
            datetime.fromisoformat(data["since"]), str(data["cursor"]), bool(data["complete"])
        )
    except (ValueError, KeyError, TypeError):
        return None
    if mark.complete or mark.since != since:
        return None
    return mark


def remember(engine: Engine, source: str, stream: str, mark: BackfillMark, now: datetime) -> None:
    """Store how far the backfill got (after a page's tickets are committed)."""
    queries.save_cursor(engine, source, backfill_stream(stream), mark.text(), now)
