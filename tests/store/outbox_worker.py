"""A flusher in its own process, for the outbox concurrency test (run by test_outbox.py).

Usage: python outbox_worker.py DATABASE_URL WORKER_ID GO_FILE OUT_FILE

Waits until GO_FILE exists (so that every worker starts at once), flushes the ``zendesk``
outbox with a sender that appends each item's idempotency key to OUT_FILE (one a line,
flushed as it goes), and exits 0.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from slabot.store.db import make_engine
from slabot.store.outbox import ClaimedItem, Outbox


def main(url: str, worker_id: str, go_file: str, out_file: str) -> int:
    engine = make_engine(url)
    outbox = Outbox(engine, lambda: datetime.now(UTC))
    deadline = time.monotonic() + 60
    while not Path(go_file).exists():
        if time.monotonic() > deadline:
            print("never told to start", file=sys.stderr)
            return 2
        time.sleep(0.005)
    with open(out_file, "a", encoding="utf-8") as out:

        def send(item: ClaimedItem) -> None:
            out.write(item.idempotency_key + "\n")
            out.flush()
            time.sleep(0.0005)

        report = outbox.flush("zendesk", send, worker_id, limit=7, lease=timedelta(minutes=5))
    engine.dispose()
    print(f"{worker_id} sent {report.sent} lost {report.lost}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
