"""``slabot run`` on an accelerated clock, as a process: ``python -m tests.proof.clocked_service``.

It does what ``slabot run`` does (``slabot.service.server``: settings from the environment
and the config file, logs with every secret masked, migrations, the app and every scheduled
job, uvicorn until SIGTERM) with two differences a test needs:

- the clock is the demo's way of accelerating time, shared by every process of a test:
  ``SLABOT_TEST_CLOCK_START`` (an ISO 8601 instant) at the real time
  ``SLABOT_TEST_CLOCK_ANCHOR`` (epoch seconds), running ``SLABOT_TEST_CLOCK_RATE`` times
  faster than real time, so a process started again after a SIGKILL goes on from the same
  instant, and the outbox's backoff and leases (minutes) pass in seconds;
- the helpdesk and Slack clients get short time-outs (``CLIENT_OPTIONS``), so a fake that
  answers too late is a time-out within the test's patience.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from slabot.service.logs import SecretMasker, configure_logging
from slabot.service.server import prepare, serve
from slabot.service.settings import load_settings

CLIENT_OPTIONS: dict[str, dict[str, Any]] = {
    "zendesk": {"timeout": 3.0, "job_poll_interval": 0.1},
    "jira": {"timeout": 3.0},
    "slack": {"timeout": 3},
    "zendesk_intake": {"retry_delay": 0.2, "retries": 5},
    "jira_intake": {"retry_delay": 0.2, "retries": 5},
}


class SharedClock:
    """``start`` at the real instant ``anchor``, running ``rate`` times as fast."""

    def __init__(self, start: datetime, anchor: float, rate: float) -> None:
        self.start = start
        self.anchor = anchor
        self.rate = rate

    def __call__(self) -> datetime:
        return self.start + timedelta(seconds=(time.time() - self.anchor) * self.rate)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> SharedClock:
        return cls(
            datetime.fromisoformat(environ["SLABOT_TEST_CLOCK_START"]).astimezone(UTC),
            float(environ["SLABOT_TEST_CLOCK_ANCHOR"]),
            float(environ["SLABOT_TEST_CLOCK_RATE"]),
        )

    def environ(self) -> dict[str, str]:
        return {
            "SLABOT_TEST_CLOCK_START": self.start.isoformat(),
            "SLABOT_TEST_CLOCK_ANCHOR": repr(self.anchor),
            "SLABOT_TEST_CLOCK_RATE": repr(self.rate),
        }


def run(port: int, environ: Mapping[str, str], clock: Callable[[], datetime]) -> int:
    settings = load_settings(environ)
    masker = SecretMasker(settings.secrets())
    configure_logging(masker, level=settings.service.log_level, form=settings.service.log_format)
    service = prepare(settings, clock, client_options=CLIENT_OPTIONS)
    serve(service, "127.0.0.1", port)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    # The test's variables are not settings: drop them before the settings are read.
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SLABOT_TEST_")}
    return run(args.port, environ, SharedClock.from_environ(os.environ))


if __name__ == "__main__":
    raise SystemExit(main())
