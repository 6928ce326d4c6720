"""``slabot doctor`` against the fake Zendesk, Jira and Slack: every credential, role,
permission, field, channel and group is probed and reported OK/WARN/FAIL with its fix; the
exit status is 1 on any failure; secrets never appear. A refused credential is told apart
from an unreachable system."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from processes import SLABOT, clean_environ

from slabot.demo.environment import (
    JIRA_PLAN,
    SUPPORT_CHANNEL,
    ZD_RESTORATION,
    DemoSystems,
    write_config,
)
from slabot.service.doctor import Check, record, run_checks
from slabot.service.health import Health
from slabot.service.settings import load_settings


def doctor(
    systems: DemoSystems, tmp_path: Path, *args: str, extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    config = write_config(tmp_path / "slabot.yaml")
    environ = systems.environ(f"sqlite:///{tmp_path / 'slabot.db'}", config, extra)
    return subprocess.run(
        [str(SLABOT), "doctor", *args],
        env=clean_environ(environ),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def by_name(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(check["system"], check["name"]): check for check in report["checks"]}


def test_a_correct_set_up_passes_with_each_check_named(
    systems: DemoSystems, tmp_path: Path
) -> None:
    systems.slack.scopes = (*systems.slack.scopes, "channels:read")
    done = doctor(systems, tmp_path, "--format", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    checks = by_name(report)
    assert report["ok"] is True
    assert {c["status"] for c in report["checks"]} <= {"ok", "info"}
    for expected in [
        ("zendesk", "credentials"),
        ("zendesk", "role"),
        ("zendesk", "field due_fields.restoration"),
        ("zendesk", "organization fields"),
        ("jira", "credentials"),
        ("jira", "permissions SUP"),
        ("jira", "fields"),
        ("slack", "credentials"),
        ("slack", "scopes"),
        ("slack", f"channel {SUPPORT_CHANNEL}"),
    ]:
        assert checks[expected]["status"] == "ok", checks[expected]
    expiry = checks[("jira", "token expiry")]
    assert expiry["status"] == "info" and "id.atlassian.com" in expiry["fix"]
    assert systems.zendesk.count("GET", "/users/me") >= 1
    assert systems.jira.count("GET", "/mypermissions") == 1
    assert len(systems.slack.calls_to("conversations.info")) == 1
    for secret in systems.secrets():
        assert secret not in done.stdout + done.stderr


def test_every_wrong_role_permission_field_scope_channel_and_group_fails_with_its_fix(
    systems: DemoSystems, tmp_path: Path
) -> None:
    systems.zendesk.users[systems.zendesk.bot_user_id]["role"] = "agent"
    del systems.zendesk.ticket_fields[ZD_RESTORATION]
    systems.jira.denied["SUP"] = {"SCHEDULE_ISSUES", "ADD_COMMENTS"}
    del systems.jira.custom_fields[JIRA_PLAN]
    kept = [scope for scope in systems.slack.scopes if scope != "usergroups:read"]
    systems.slack.scopes = (*kept, "channels:read")
    systems.slack.add_channel(SUPPORT_CHANNEL, "support", private=True, member=False)
    done = doctor(systems, tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    failures = [line for line in lines if line.startswith("FAIL")]
    text = "\n".join(lines)
    assert any("zendesk role: slabot's user is agent" in line for line in failures)
    assert "make slabot's Zendesk user an admin" in text
    assert any(f"no ticket field {ZD_RESTORATION}" in line for line in failures)
    assert any(
        "jira permissions SUP" in line and "SCHEDULE_ISSUES to write the due date" in line
        for line in failures
    )
    assert any(f"no such field: {JIRA_PLAN}" in line for line in failures)
    assert any("lacks usergroups:read" in line for line in failures)
    assert any(f"channel {SUPPORT_CHANNEL}" in line for line in failures)
    assert lines[-1].startswith(f"{len(failures)} failed")
    # each failure is followed by what to fix
    for index, line in enumerate(lines[:-1]):
        if line.startswith("FAIL"):
            assert lines[index + 1].startswith("      fix: "), line


def test_refused_credentials_are_told_apart_from_an_unreachable_system(
    systems: DemoSystems, tmp_path: Path
) -> None:
    systems.zendesk.fail_next(1, 401, path_contains="/users/me")
    systems.jira.fail_next(1, 401, path_contains="/myself")
    config = write_config(tmp_path / "slabot.yaml")
    environ = systems.environ(
        f"sqlite:///{tmp_path / 'slabot.db'}",
        config,
        {"SLACK_BOT_TOKEN": "xoxb-a-revoked-token", "SLACK_API_URL": systems.slack.api_url},
    )
    checks = run_checks(load_settings(environ), client_options={"jira": {"timeout": 5.0}})
    found = {(c.system, c.name): c for c in checks}
    for system in ("zendesk", "jira", "slack"):
        check = found[(system, "credentials")]
        assert (check.status, check.refused) == ("fail", True), check
    # Only the identity is probed when it is refused: nothing else could be read.
    assert {name for system, name in found if system == "zendesk"} == {"credentials"}
    health = Health(lambda: systems.zendesk.now, ("zendesk", "jira", "slack"))
    record(health, checks)
    problems = health.problems()
    assert len(problems) == 3 and all("credentials refused" in p for p in problems)

    systems.zendesk.fail_next(1, 503, path_contains="/users/me")
    down = run_checks(load_settings(environ))
    zendesk = next(c for c in down if (c.system, c.name) == ("zendesk", "credentials"))
    assert (zendesk.status, zendesk.refused) == ("fail", False)
    assert "not a refusal" in zendesk.fix
    # The revoked Slack token is the point of this test: the fake Slack saw exactly that.
    assert set(systems.slack.problems) == {"auth.test: called without the bot token"}
    systems.slack.problems.clear()


def test_the_report_never_shows_a_secret_even_when_an_error_echoes_it(
    systems: DemoSystems, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "slabot.yaml")
    settings = load_settings(systems.environ("sqlite:///:memory:", config))
    secret = settings.secrets()[0]
    echoed = Check("zendesk", "credentials", "fail", f"token {secret} refused", f"not {secret}")
    from slabot.service.doctor import render
    from slabot.service.logs import SecretMasker

    masked = SecretMasker(settings.secrets())
    assert secret not in masked.mask(render([echoed]))
    for check in run_checks(settings):
        assert secret not in check.detail + check.fix


@pytest.mark.parametrize("form", ["text", "json"])
def test_doctor_without_connectors_warns_and_exits_0(tmp_path: Path, form: str) -> None:
    done = subprocess.run(
        [str(SLABOT), "doctor", "--format", form],
        env=clean_environ({"DATABASE_URL": f"sqlite:///{tmp_path / 'db'}"}),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "no connector is configured" in done.stdout
