"""``slabot check-config`` on the service config (config/slabot.yaml): told apart from a policy
by its top-level keys (or ``--kind service``), validated with the models ``slabot run`` reads
it with, every problem located as ``file:line: field.path: message``."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from slabot.cli import main

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "config" / "slabot.yaml"
PROBLEM_LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): (?P<field>[\w.-]+): (?P<msg>\S.*)$")

BROKEN = """\
service:
  port: 99999
  scan_interval_secnds: 5
zendesk:
  policy: zoom
  prioritys: {P1: urgent}
jira:
  policy: zoom
  projects: SUP
slack:
  nudges:
    default_channel: "#support"
dashboard: {}
"""


def check(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["check-config", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_the_shipped_service_config_has_no_errors(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = check(capsys, str(SHIPPED))
    assert (status, err) == (0, "")
    assert out.strip() == f"{SHIPPED}: ok (service config)"


def test_a_service_config_and_a_policy_are_checked_side_by_side(
    capsys: pytest.CaptureFixture[str],
) -> None:
    policy = ROOT / "config" / "policies" / "zoom.yaml"
    status, out, err = check(capsys, str(SHIPPED), str(policy))
    assert (status, err) == (0, "")
    assert "ok (service config)" in out and "ok (policy zoom" in out


def test_each_problem_of_a_broken_service_config_is_located(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    broken = tmp_path / "slabot.yaml"
    broken.write_text(BROKEN, encoding="utf-8")
    status, out, err = check(capsys, str(broken))
    assert status == 1 and out == ""
    found = {}
    for line in err.splitlines():
        match = PROBLEM_LINE.match(line)
        assert match, line
        assert match["file"] == str(broken)
        found[match["field"]] = (int(match["line"]), match["msg"])
    assert set(found) == {
        "service.port",
        "service.scan_interval_secnds",
        "zendesk.prioritys",
        "jira.projects",
        "slack.nudges.default_channel",
        "dashboard",
    }
    assert found["service.port"][0] == 2 and "65535" in found["service.port"][1]
    assert found["service.scan_interval_secnds"][0] == 3
    assert "did you mean 'scan_interval_seconds'" in found["service.scan_interval_secnds"][1]
    assert found["zendesk.prioritys"][0] == 6 and "'priorities'" in found["zendesk.prioritys"][1]
    assert found["jira.projects"][0] == 9 and "a list" in found["jira.projects"][1]
    assert found["slack.nudges.default_channel"][0] == 12
    assert "not a channel id" in found["slack.nudges.default_channel"][1]
    assert found["dashboard"][0] == 13 and "unknown section" in found["dashboard"][1]


def test_a_helpdesk_policy_that_no_loaded_file_defines_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "slabot.yaml"
    text = SHIPPED.read_text(encoding="utf-8").replace("\n  policy: zoom", "\n  policy: zooom", 1)
    config.write_text(text, encoding="utf-8")
    status, _out, err = check(capsys, str(config))
    line = 1 + text.splitlines().index("  policy: zooom")
    assert status == 1
    assert err.startswith(f"{config}:{line}: zendesk.policy: 'zooom' is not among the policies")


def test_kind_service_checks_a_file_that_holds_only_a_service_section(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "service.yaml"
    config.write_text("service:\n  webhook_worker: fork\n", encoding="utf-8")
    status, _out, err = check(capsys, "--kind", "service", str(config))
    assert status == 1
    assert err.startswith(f"{config}:2: service.webhook_worker: 'fork' is not allowed here")


def test_kind_policy_reads_the_service_config_as_a_policy(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, _out, err = check(capsys, "--kind", "policy", str(SHIPPED))
    assert status == 1 and "name" in err  # a policy needs its name, and has no zendesk key


def test_check_config_as_a_process_on_the_shipped_config() -> None:
    script = Path(sys.executable).with_name("slabot")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "slabot.cli"]
    done = subprocess.run(
        [*command, "check-config", str(SHIPPED)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
