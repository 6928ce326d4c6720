"""``slabot demo --once``: the README's main command, end to end, through the real clients."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SLABOT = Path(sys.executable).parent / "slabot"


def test_the_demo_plays_the_whole_flow_and_exits_0(tmp_path: Path) -> None:
    environ = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ZENDESK_", "JIRA_", "SLACK_", "SLABOT_", "DATABASE_URL"))
    }
    done = subprocess.run(
        [str(SLABOT), "demo", "--once", "--port", "0"],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "Zendesk #1001" in out and "webhook answered 202" in out
    assert "the repeat is answered 200 and dropped" in out
    assert "[zendesk] ticket 1002: priority low" in out  # zoom: P1 outside production is P4
    assert "[jira] SUP-2: priority Medium" in out  # cloudtalk: P1 outside production is P3
    assert "75% of its time used" in out  # the nudge
    assert "[zendesk] ticket 1003: priority high" in out and "internal note" in out
    assert "breached" in out
    assert "SLA digest" in out
    assert "every system received what the policy requires" in out
    assert "Traceback" not in done.stderr
    for secret in ("demo-zendesk-signing-secret", "xoxb-demo-bot-token", "demo-jira-api-token"):
        assert secret not in out + done.stderr
