"""``slabot run`` with ``SLACK_APP_TOKEN`` opens Socket Mode: Slack's requests arrive over the
WebSocket the service opens (a fake Socket Mode end on loopback), are acknowledged on it, and
answered; a first connection that fails is retried rather than stopping the start."""

from __future__ import annotations

from pathlib import Path

from processes import free_port, start, stop, wait_ready

from slabot.demo.environment import AGENT, DemoSystems, write_config
from slabot.fakes.slack import FakeSocketMode


def test_slabot_run_answers_a_slash_command_over_socket_mode(
    systems: DemoSystems, tmp_path: Path
) -> None:
    socket_mode = FakeSocketMode().start()
    systems.slack.socket_mode_url = socket_mode.url
    # Slack is briefly unreachable for the first two apps.connections.open (the start-up
    # doctor's probe and the connection's first attempt, in either order): retried, not fatal.
    systems.slack.fail_next(2, 503, method="apps.connections.open")
    config = write_config(tmp_path / "slabot.yaml")
    environ = systems.environ(
        f"sqlite:///{tmp_path / 'slabot.db'}",
        config,
        {"SLACK_APP_TOKEN": systems.slack.app_token, "SLABOT_WEBHOOK_WORKER": "thread"},
    )
    port, log = free_port(), tmp_path / "run.log"
    process = start(environ, port, log, tmp_path)
    try:
        wait_ready(f"http://127.0.0.1:{port}", process, log)
        socket_mode.wait_connected(timeout=20)
        envelope = socket_mode.push(
            "slash_commands",
            {
                "token": "unused-in-socket-mode",
                "team_id": systems.slack.team_id,
                "user_id": AGENT,
                "command": "/sla",
                "text": "help",
                "response_url": systems.slack.response_url("socket"),
                "trigger_id": "1.2.3",
                "channel_id": "C0SUPPORT",
            },
        )
        ack = socket_mode.wait_ack(envelope)
        assert ack["envelope_id"] == envelope
        (answer,) = systems.slack.wait_responses(1, timeout=10)
        assert answer["response_type"] == "ephemeral" and "/sla" in str(answer)
    finally:
        stop(process)
        socket_mode.stop()
    opened = [c for c in systems.slack.calls if c.method == "apps.connections.open"]
    statuses = [c.status for c in opened]
    assert statuses.count(-503) == 2 and statuses[0] == -503 and 200 in statuses, statuses
    text = log.read_text()
    assert "Socket Mode: could not connect" in text and "Socket Mode connected" in text
    for secret in [*systems.secrets(), systems.slack.app_token]:
        assert secret not in text
