"""Malformed config and policy files: a message naming the file and the field, exit status 1,
no traceback; ``slabot run`` and ``slabot check-config`` as real processes.

Each case of ``slabot run`` gets a config/slabot.yaml (or a policy it names, or an
environment setting) with one thing wrong, and the environment of a full deployment
(Zendesk, Jira and Slack credentials), so that every section is read.
"""

from __future__ import annotations

import copy
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from slabot.demo.environment import CONFIG
from tests.service.processes import SLABOT, clean_environ, free_port

pytestmark = pytest.mark.slow

ENVIRON = {
    "ZENDESK_URL": "http://127.0.0.1:9",
    "ZENDESK_EMAIL": "slabot@example.com",
    "ZENDESK_API_TOKEN": "bad-config-zendesk-token",
    "ZENDESK_WEBHOOK_SECRET": "bad-config-zendesk-secret",
    "JIRA_URL": "http://127.0.0.1:9",
    "JIRA_EMAIL": "slabot@example.com",
    "JIRA_API_TOKEN": "bad-config-jira-token",
    "JIRA_WEBHOOK_SECRET": "bad-config-jira-secret",
    "SLACK_BOT_TOKEN": "xoxb-bad-config-token",
    "SLACK_SIGNING_SECRET": "bad-config-signing-secret",
}
GOOD_POLICY = Path(__file__).resolve().parents[2] / "config" / "policies" / "zoom.yaml"


def changed(edit: Callable[[dict[str, Any]], object]) -> Callable[[Path], str]:
    """A config file: the demo's, changed by ``edit``."""

    def write(folder: Path) -> str:
        data = copy.deepcopy(CONFIG)
        edit(data)
        return yaml.safe_dump(data, sort_keys=False)

    return write


def text(content: str | bytes) -> Callable[[Path], str | bytes]:
    return lambda _folder: content


def with_policy(policy: str | bytes) -> Callable[[Path], str]:
    """The demo's config, loading a broken policy file as well as the bundled ones."""

    def write(folder: Path) -> str:
        path = folder / "broken.yaml"
        path.write_bytes(policy if isinstance(policy, bytes) else policy.encode())
        data = copy.deepcopy(CONFIG)
        data["service"] = {"policies": [str(GOOD_POLICY), str(path)]}
        return yaml.safe_dump(data, sort_keys=False)

    return write


def section(key: str, value: Any) -> Callable[[dict[str, Any]], object]:
    def edit(data: dict[str, Any]) -> None:
        target = data
        *path, last = key.split(".")
        for part in path:
            target = target.setdefault(part, {})
        target[last] = value

    return edit


RUN_CASES: dict[str, tuple[Callable[[Path], Any], dict[str, str], list[str]]] = {
    "yaml syntax": (text("zendesk: [unclosed\n"), {}, ["slabot.yaml", "not valid YAML"]),
    "not a mapping": (text("- zendesk\n- jira\n"), {}, ["slabot.yaml", "mapping of sections"]),
    "deep": (text("zendesk: " + "[" * 5000 + "]" * 5000 + "\n"), {}, ["nested too deeply"]),
    "not UTF-8": (text(b"zendesk:\n  policy: zo\xffom\n"), {}, ["slabot.yaml", "UTF-8"]),
    "service port": (
        changed(section("service.port", "eighty")),
        {},
        ["slabot.yaml", "service.port"],
    ),
    "service unknown key": (changed(section("service.portt", 80)), {}, ["service.portt"]),
    "service time zone": (
        changed(section("service.timezone", "Mars/Olympus")),
        {},
        ["service.timezone", "Mars/Olympus"],
    ),
    "environment override": (
        changed(lambda _data: None),
        {"SLABOT_SCAN_INTERVAL_SECONDS": "-5"},
        ["service.scan_interval_seconds", "SLABOT_SCAN_INTERVAL_SECONDS"],
    ),
    "zendesk priority": (
        changed(section("zendesk.priorities", {"P1": "critical"})),
        {},
        ["slabot.yaml", "zendesk.priorities.P1"],
    ),
    "zendesk unknown key": (changed(section("zendesk.prioritys", {})), {}, ["zendesk.prioritys"]),
    "zendesk policy missing": (
        changed(section("zendesk.policy", "acme")),
        {},
        ["zendesk.policy", "acme"],
    ),
    "jira project key": (changed(section("jira.projects", ["sup"])), {}, ["jira.projects"]),
    "slack channel name": (
        changed(section("slack.nudges.default_channel", "#support")),
        {},
        ["slack.nudges.default_channel"],
    ),
    "slack digest day numbers": (
        changed(section("slack.digests", [{"channel": "C0SUPPORT", "schedule": "0 9 * * 1-5"}])),
        {},
        ["slack.digests.0.schedule"],
    ),
    "policy field": (
        with_policy(GOOD_POLICY.read_text().replace("commitment: slo", "commitment: sometimes", 1)),
        {},
        ["broken.yaml:", "commitment"],
    ),
    "policy yaml": (with_policy("name: broken\npriorities: [\n"), {}, ["broken.yaml:"]),
    "policy not UTF-8": (with_policy(b"name: br\xffoken\n"), {}, ["broken.yaml", "UTF-8"]),
    "policy missing": (
        changed(section("service.policies", ["/nonexistent/policy.yaml"])),
        {},
        ["/nonexistent/policy.yaml", "cannot read"],
    ),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every ``slabot run`` case, started together (each takes a second or two to import)."""
    started = {}
    for name, (write, extra, _) in RUN_CASES.items():
        folder = tmp_path_factory.mktemp("run")
        content = write(folder)
        config = folder / "slabot.yaml"
        if isinstance(content, bytes):
            config.write_bytes(content)
        else:
            config.write_text(content, encoding="utf-8")
        environ = clean_environ(
            {
                **ENVIRON,
                "DATABASE_URL": f"sqlite:///{folder / 'slabot.db'}",
                "SLABOT_CONFIG": str(config),
                **extra,
            }
        )
        started[name] = subprocess.Popen(
            [str(SLABOT), "run", "--port", str(free_port())],
            env=environ,
            cwd=folder,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    # One deadline for all: twenty interpreters importing at once on a loaded 2-core
    # machine can take a minute before the first of them gets to read its config.
    deadline = time.monotonic() + 240
    done = {}
    for name, process in started.items():
        try:
            out, err = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
        done[name] = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    return done


@pytest.mark.parametrize("name", RUN_CASES)
def test_slabot_run_refuses_a_malformed_config_naming_file_and_field(
    runs: dict[str, subprocess.CompletedProcess[str]], name: str
) -> None:
    done = runs[name]
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output, output
    for wanted in RUN_CASES[name][2]:
        assert wanted in done.stderr, (wanted, done.stderr)
    for secret in ENVIRON.values():
        if "token" in secret or "secret" in secret:
            assert secret not in output


CHECK_CASES: dict[str, tuple[bytes, list[str]]] = {
    "unknown key": (b"name: x\nowner: me\n", ["owner"]),
    "wrong type": (
        GOOD_POLICY.read_bytes().replace(b"default_priority: P3", b"default_priority: [P3]"),
        ["default_priority"],
    ),
    "unknown priority": (
        GOOD_POLICY.read_bytes().replace(
            b"cap: P4\n    reclassified", b"cap: P9\n    reclassified"
        ),
        ["classification.environment.cap", "P9"],
    ),
    "unknown country": (
        GOOD_POLICY.read_bytes().replace(b"default: US", b"default: XX"),
        ["holidays.country", "XX"],
    ),
    "bad duration": (
        GOOD_POLICY.read_bytes().replace(b"after: 4h", b"after: 4 hours"),
        ["plans.standard.targets.P1.first_response", "4 hours"],
    ),
    "yaml": (b"name: x\nplans: {\n", [":"]),
    "not UTF-8": (b"name: \xff\n", ["UTF-8"]),
    "empty": (b"", ["policy"]),
    "a list": (b"- name: x\n", ["mapping"]),
    "deep": (b"name: " + b"[" * 5000 + b"]" * 5000 + b"\n", ["nested too deeply"]),
}


@pytest.mark.parametrize("name", CHECK_CASES)
def test_check_config_names_file_and_field_and_exits_1(tmp_path: Path, name: str) -> None:
    content, wanted = CHECK_CASES[name]
    policy = tmp_path / f"{name.replace(' ', '_')}.yaml"
    policy.write_bytes(content)
    done = subprocess.run(
        [str(SLABOT), "check-config", str(policy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    first = done.stderr.splitlines()[0]
    assert first.startswith(f"{policy}"), done.stderr
    for part in wanted:
        assert part in done.stderr, (part, done.stderr)


def test_check_config_of_a_directory_or_a_missing_file_exits_1(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(SLABOT), "check-config", str(tmp_path), str(tmp_path / "missing.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert f"{tmp_path}: cannot read" in done.stderr
    assert f"{tmp_path / 'missing.yaml'}: cannot read" in done.stderr
