"""The command line's contract: exit statuses, output shapes, and messages instead of tracebacks."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from slabot.cli import main

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "config" / "policies"
CLOUDTALK = str(POLICIES / "cloudtalk.yaml")
ZOOM = str(POLICIES / "zoom.yaml")
ZMANDA = str(POLICIES / "zmanda.yaml")
SHIPPED = (CLOUDTALK, ZOOM, ZMANDA)
BAD_POLICIES = sorted((ROOT / "tests" / "fixtures" / "policies" / "bad").glob("*.yaml"))
SAMPLE = ROOT / "slabot" / "samples" / "tickets.jsonl"
NOW = "2026-11-23T12:00:00Z"

OUTPUT_KEYS = [
    "id",
    "priority",
    "requested_priority",
    "plan",
    "commitment",
    "due",
    "state",
    "tags",
    "notes",
]
TARGET_KEYS = ["first_response", "restoration", "next_update"]
STATES = {"met", "breached", "running", "paused", "none"}
# file:line: field.path: message, or file:line: message for a YAML syntax error.
PROBLEM_LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+):( (?P<field>[\w.-]+):)? (?P<msg>\S.*)$")


def ticket(**fields: Any) -> str:
    return json.dumps({"created_at": "2026-11-20T16:30:00+01:00", **fields})


def run(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *argv: str,
    stdin: str = "",
) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def slabot_command() -> list[str]:
    """The installed console script next to this interpreter, else ``python -m slabot.cli``."""
    script = Path(sys.executable).with_name("slabot")
    return [str(script)] if script.exists() else [sys.executable, "-m", "slabot.cli"]


# check-config


@pytest.mark.parametrize("path", SHIPPED)
def test_check_config_accepts_each_shipped_policy(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    status, out, err = run(capsys, monkeypatch, "check-config", path)
    assert status == 0
    assert out.startswith(f"{path}: ok (policy {Path(path).stem}: P1, P2, P3")
    assert err == ""


def test_check_config_accepts_several_files_at_once(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    status, out, err = run(capsys, monkeypatch, "check-config", *SHIPPED)
    assert status == 0
    assert [line.split(":")[0] for line in out.splitlines()] == list(SHIPPED)
    assert "plans standard, premier, premier_assurance, premier_plus, premier_elite" in out
    assert err == ""


def test_check_config_reports_a_bad_file_with_file_line_field_and_message(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = str(ROOT / "tests" / "fixtures" / "policies" / "bad" / "unknown_nested_key.yaml")
    status, out, err = run(capsys, monkeypatch, "check-config", CLOUDTALK, bad)
    assert status == 1
    assert out == (
        f"{CLOUDTALK}: ok (policy cloudtalk: P1, P2, P3; plans basic, professional, advanced)\n"
    )
    assert err.splitlines() == [
        f"{bad}:32: plans.enterprise.targets.P1.first_respons: unknown key 'first_respons' "
        "(did you mean 'first_response'?); expected one of first_response, restoration, "
        "next_update, next_reply, agent_work, requester_wait (merged into plans.enterprise by "
        "'<<:' at line 37)",
        f"{bad}:32: plans.professional.targets.P1.first_respons: unknown key 'first_respons' "
        "(did you mean 'first_response'?); expected one of first_response, restoration, "
        "next_update, next_reply, agent_work, requester_wait",
    ]
    assert "Traceback" not in err


def test_check_config_as_a_process_prints_one_located_line_per_problem() -> None:
    names = [str(path) for path in BAD_POLICIES]
    done = subprocess.run(
        [*slabot_command(), "check-config", *names],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    reported = set()
    for line in done.stderr.splitlines():
        match = PROBLEM_LINE.match(line)
        assert match, f"not file:line: field: message: {line!r}"
        reported.add(match["file"])
    assert reported == set(names)


def test_check_config_missing_file(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = str(tmp_path / "missing.yaml")
    status, out, err = run(capsys, monkeypatch, "check-config", missing, ZMANDA)
    assert status == 1
    assert err == f"{missing}: cannot read: No such file or directory\n"
    assert out.startswith(f"{ZMANDA}: ok")


def test_check_config_yaml_error_has_its_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: acme\npriorities: [P1\ndefault_priority: P1\n", encoding="utf-8")
    status, _, err = run(capsys, monkeypatch, "check-config", str(path))
    assert status == 1
    assert err.startswith(f"{path}:3: not valid YAML: ")
    assert "flow sequence that starts at line 2" in err


# evaluate (JSON Lines)


def test_evaluate_readme_example(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The README's own example, read from the README, so the two cannot drift apart.
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    example = re.search(
        r"\$ echo '(?P<ticket>\{.*?\})' \\\n\s*\| slabot evaluate --policy (?P<policy>\S+) "
        r"--now (?P<now>\S+)\n(?P<output>\{.*\})\n",
        readme,
    )
    assert example, "README.md lost its `slabot evaluate` example"
    status, out, err = run(
        capsys,
        monkeypatch,
        "evaluate",
        "--policy",
        str(Path(__file__).resolve().parents[2] / example["policy"]),
        "--now",
        example["now"],
        stdin=example["ticket"] + "\n",
    )
    assert status == 0
    assert err == ""
    assert out == example["output"] + "\n"


def test_evaluate_output_shape_and_order(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [
        ticket(id="c", plan="professional", priority="P2", environment="production"),
        ticket(id="a", plan="advanced", priority="P1", environment="production"),
        ticket(id="b", plan="professional", priority="P1", environment="staging"),
        ticket(id="e", plan="basic"),
        ticket(id="d"),
    ]
    status, out, err = run(
        capsys, monkeypatch, "evaluate", "--policy", CLOUDTALK, "--now", NOW, "-",
        stdin="\n".join(lines) + "\n",
    )  # fmt: skip
    assert (status, err) == (0, "")
    results = jsonl(out)
    assert [r["id"] for r in results] == ["c", "a", "b", "e", "d"]
    for result in results:
        assert list(result) == OUTPUT_KEYS
        assert list(result["due"]) == TARGET_KEYS
        assert list(result["state"]) == TARGET_KEYS
        for due in result["due"].values():
            assert due is None or re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", due)
        assert set(result["state"].values()) <= STATES
        assert result["tags"] == sorted(result["tags"])
        assert all(isinstance(note, str) for note in result["notes"])
    assert results[0]["due"]["first_response"].endswith("Z")
    assert results[3]["plan"] == "basic"
    assert results[4]["plan"] is None
    assert results[4]["commitment"] is None


def test_evaluate_tags_are_sorted(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The environment rule tags first, the product stage rule second; output is sorted.
    line = ticket(
        id="z1", plan="premier", priority="P1", environment="staging", product_stage="beta"
    )
    status, out, _ = run(
        capsys, monkeypatch, "evaluate", "--policy", ZOOM, "--now", NOW, stdin=line + "\n"
    )
    assert status == 0
    [result] = jsonl(out)
    assert result["tags"] == ["sla_reclassified_beta", "sla_reclassified_non_production"]


def test_evaluate_bad_lines_are_reported_in_place(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [
        ticket(id="first", plan="advanced"),  # 1
        "",  # 2: blank, ignored
        "{not json",  # 3
        json.dumps({"created_at": "2026-11-20T16:30:00Z", "plan": "basic"}),  # 4: no id
        json.dumps({"id": "naive", "created_at": "2026-11-20T16:30:00"}),  # 5
        "   ",  # 6: blank, ignored
        ticket(id="unsolved", status="solved"),  # 7: no solved_at
        "[1, 2]",  # 8
        ticket(id="last", plan="professional", environment="production"),  # 9
    ]
    status, out, err = run(
        capsys, monkeypatch, "evaluate", "--policy", CLOUDTALK, "--now", NOW,
        stdin="\n".join(lines) + "\n",
    )  # fmt: skip
    assert status == 1
    results = jsonl(out)
    assert len(results) == 7
    assert results[0]["id"] == "first" and "error" not in results[0]
    assert results[-1]["id"] == "last" and list(results[-1]) == OUTPUT_KEYS
    errors = results[1:-1]
    for error in errors:
        assert list(error) == ["line", "id", "error"]
    assert [(e["line"], e["id"]) for e in errors] == [
        (3, None),
        (4, None),
        (5, "naive"),
        (7, "unsolved"),
        (8, None),
    ]
    assert errors[0]["error"].startswith("not valid JSON")
    assert "field 'id' is required" in errors[1]["error"]
    assert "has no offset" in errors[2]["error"]
    assert "status 'solved' needs 'solved_at'" in errors[3]["error"]
    assert "must be a JSON object" in errors[4]["error"]
    assert err.splitlines() == [f"slabot: line {e['line']}: {e['error']}" for e in errors]
    assert "Traceback" not in err


def test_evaluate_a_plan_the_policy_does_not_know_is_evaluated_as_the_service_does(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # As the service: no targets (cloudtalk has no default plan), tagged and noted; a warning
    # on standard error names the line, and the exit status stays 0 (nothing was refused).
    lines = [ticket(id="gold", plan="gold"), ticket(id="known", plan="advanced")]
    status, out, err = run(
        capsys, monkeypatch, "evaluate", "--policy", CLOUDTALK, "--now", NOW,
        stdin="\n".join(lines) + "\n",
    )  # fmt: skip
    assert status == 0
    gold, known = jsonl(out)
    assert list(gold) == OUTPUT_KEYS
    assert (gold["plan"], gold["commitment"], gold["tags"]) == (None, None, ["sla_unknown_plan"])
    assert set(gold["state"].values()) == {"none"}
    note = (
        "plan 'gold' is not in policy 'cloudtalk' (known plans: advanced, basic, professional): "
        "no targets (the policy has no default plan); add the plan to the policy, or correct "
        "the ticket's plan"
    )
    assert gold["notes"][-1] == note
    assert "sla_unknown_plan" not in known["tags"]
    assert err.splitlines() == [f"slabot: line 1: warning: ticket gold: {note}"]
    status, out, err = run(
        capsys, monkeypatch, "explain", "--policy", CLOUDTALK, "--now", NOW, lines[0]
    )
    assert (status, err) == (0, "")
    assert f"  - {note}\nPlan: 'gold', not in the policy\nTags: sla_unknown_plan\n" in out


def test_evaluate_only_blank_lines(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    status, out, err = run(
        capsys, monkeypatch, "evaluate", "--policy", CLOUDTALK, "--now", NOW, stdin="\n\n  \n"
    )
    assert (status, out, err) == (0, "", "")


@pytest.mark.parametrize(
    ("now", "phrase"),
    [
        ("yesterday", "'yesterday' is not ISO 8601"),
        ("2026-11-23T12:00:00", "has no offset; add one such as 'Z'"),
        ("2026-13-01T00:00:00Z", "is not ISO 8601"),
    ],
)
def test_evaluate_bad_now(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, now: str, phrase: str
) -> None:
    status, out, err = run(
        capsys, monkeypatch, "evaluate", "--policy", CLOUDTALK, "--now", now,
        stdin=ticket(id="1") + "\n",
    )  # fmt: skip
    assert status == 1
    assert out == ""
    assert err.startswith("slabot: field '--now': ")
    assert phrase in err
    assert "Traceback" not in err


def test_evaluate_reads_stdin_by_default_and_with_dash(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    line = ticket(id="s", plan="professional", environment="production") + "\n"
    base = ("evaluate", "--policy", CLOUDTALK, "--now", NOW)
    default = run(capsys, monkeypatch, *base, stdin=line)
    dash = run(capsys, monkeypatch, *base, "-", stdin=line)
    assert default == dash
    assert default[0] == 0
    assert jsonl(default[1])[0]["id"] == "s"


def test_evaluate_reads_a_file(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "tickets.jsonl"
    path.write_text(ticket(id="f1") + "\n" + ticket(id="f2") + "\n", encoding="utf-8")
    status, out, _ = run(
        capsys, monkeypatch, "evaluate", "--policy", CLOUDTALK, "--now", NOW, str(path)
    )
    assert status == 0
    assert [r["id"] for r in jsonl(out)] == ["f1", "f2"]


def test_evaluate_missing_input_file(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "none.jsonl"
    status, out, err = run(
        capsys, monkeypatch, "evaluate", "--policy", CLOUDTALK, "--now", NOW, str(missing)
    )
    assert status == 1
    assert out == ""
    assert err == f"slabot: {missing}: cannot read: No such file or directory\n"


def test_evaluate_needs_a_policy(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    status, _, err = run(capsys, monkeypatch, "evaluate", stdin=ticket(id="1"))
    assert status == 1
    assert err == "slabot: evaluate needs --policy FILE or --routing CONFIG (or --sample)\n"


def test_evaluate_with_a_bad_policy_file(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = str(BAD_POLICIES[0])
    status, out, err = run(capsys, monkeypatch, "evaluate", "--policy", bad, stdin=ticket(id="1"))
    assert status == 1
    assert out == ""
    assert err.startswith(f"slabot: {bad}:")
    assert "Traceback" not in err


def test_evaluate_several_policies_need_a_policy_field(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [
        ticket(id="ct", policy="cloudtalk", plan="professional", environment="production"),
        ticket(id="anon", plan="standard"),
        ticket(id="zm", policy="zmanda", plan="trial", urgency="high", impact="high"),
        ticket(id="other", policy="acme", plan="standard"),
    ]
    status, out, err = run(
        capsys, monkeypatch, "evaluate", "--policy", CLOUDTALK, "--policy", ZMANDA,
        "--now", NOW, stdin="\n".join(lines),
    )  # fmt: skip
    assert status == 1
    ct, anon, zm, other = jsonl(out)
    assert (ct["id"], ct["plan"]) == ("ct", "professional")
    assert (zm["id"], zm["plan"], zm["priority"]) == ("zm", "premium", "P1")
    assert anon == {
        "line": 2,
        "id": "anon",
        "error": "field 'policy' is required when several policies are given (cloudtalk, zmanda)",
    }
    assert other == {
        "line": 4,
        "id": "other",
        "error": "field 'policy' is 'acme'; loaded: cloudtalk, zmanda",
    }
    assert len(err.splitlines()) == 2


def test_evaluate_the_same_policy_twice_is_refused(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    status, _, err = run(
        capsys, monkeypatch, "evaluate", "--policy", ZOOM, "--policy", ZOOM, stdin=""
    )
    assert status == 1
    assert err == f"slabot: {ZOOM}: policy 'zoom' is given twice\n"


def test_evaluate_sample_table(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    status, out, err = run(capsys, monkeypatch, "evaluate", "--sample", "--format", "table")
    assert (status, err) == (0, "")
    assert out.startswith("Decisions as of 2026-11-23 12:00 (all times in UTC)\n")
    header = out.splitlines()[2]
    assert header.split() == [
        "id", "plan", "priority", "commitment", "first", "response", "restoration", "next",
        "update",
    ]  # fmt: skip
    ids = [json.loads(line)["id"] for line in SAMPLE.read_text(encoding="utf-8").splitlines()]
    assert len(ids) == 15
    rows = [line.split()[0] for line in out.splitlines()[4 : 4 + len(ids)]]
    assert rows == ids


def test_evaluate_table_shows_every_time_in_the_zone_of_tz(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    base = ("evaluate", "--sample", "--format", "table")
    _, in_utc, _ = run(capsys, monkeypatch, *base)
    status, in_tokyo, err = run(capsys, monkeypatch, *base, "--tz", "Asia/Tokyo")
    assert (status, err) == (0, "")
    assert in_tokyo.startswith("Decisions as of 2026-11-23 21:00 (all times in Asia/Tokyo)\n")
    # The same due instants, nine hours later on the clock: Tokyo has no daylight saving.
    utc_cells = re.findall(r"\w{3} \d\d \w{3} (\d\d):(\d\d)", in_utc)
    tokyo_cells = re.findall(r"\w{3} \d\d \w{3} (\d\d):(\d\d)", in_tokyo)
    assert len(utc_cells) == len(tokyo_cells) > 10
    for (h1, m1), (h2, m2) in zip(utc_cells, tokyo_cells, strict=True):
        assert (int(h2) - int(h1)) % 24 == 9 and m1 == m2


def test_evaluate_refuses_an_unknown_tz(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    status, _, err = run(capsys, monkeypatch, "evaluate", "--sample", "--tz", "Mars/Olympus")
    assert status == 1
    assert "--tz 'Mars/Olympus' is not a time zone" in err


def test_evaluate_sample_jsonl(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    status, out, _ = run(capsys, monkeypatch, "evaluate", "--sample")
    assert status == 0
    ids = [json.loads(line)["id"] for line in SAMPLE.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in jsonl(out)] == ids


def test_evaluate_table_shows_errors(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    status, out, _ = run(
        capsys, monkeypatch, "evaluate", "--policy", CLOUDTALK, "--now", NOW, "--format",
        "table", stdin=ticket(id="ok", plan="basic") + "\nnot json\n",
    )  # fmt: skip
    assert status == 1
    assert "line 2" in out
    assert "line 2: not valid JSON" in out


def test_evaluate_as_a_process() -> None:
    lines = [
        ticket(id="p1", plan="advanced", priority="P1", environment="production"),
        "",
        "{oops",
        ticket(id="p3", plan="professional", environment="production"),
    ]
    done = subprocess.run(
        [*slabot_command(), "evaluate", "--policy", CLOUDTALK, "--now", NOW, "-"],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 1
    results = jsonl(done.stdout)
    assert [r.get("id") for r in results] == ["p1", None, "p3"]
    assert results[0]["due"]["first_response"] == "2026-11-20T16:30:00Z"
    assert results[1] == {
        "line": 3,
        "id": None,
        "error": results[1]["error"],
    }
    assert done.stderr.startswith("slabot: line 3: not valid JSON")
    assert "Traceback" not in done.stderr


def test_module_entry_point_runs_the_same_main() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "slabot.cli", "check-config", CLOUDTALK],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0
    assert done.stdout.startswith(f"{CLOUDTALK}: ok")


# explain

FRIDAY_TICKET = {
    "id": "F-1",
    "created_at": "2026-11-20T16:30:00+01:00",
    "priority": "P1",
    "plan": "professional",
    "environment": "production",
}


def check_friday_explanation(out: str) -> None:
    lines = out.splitlines()
    assert lines[0] == (
        "Ticket F-1 under policy cloudtalk (CloudTalk support policy), as of 2026-11-23T12:00:00Z"
    )
    assert "Priority P1 Business Critical" in lines
    assert "  - requested P1" in lines
    assert "Plan professional, commitment sla" in lines
    assert "Tags: none" in lines
    start = lines.index(
        "first response: due Mon 2026-11-23 11:30 CET (2026-11-23T10:30:00Z), breached"
    )
    assert lines[start + 1 : start + 7] == [
        "  target: 3h on business (Mon-Fri 09:00-17:00 (Europe/Bratislava))",
        "  clock: started Fri 2026-11-20 16:30 CET; stops at the first public agent reply "
        "(or when solved)",
        "  open time used so far: 4h30m of 3h",
        "    Fri 2026-11-20 16:30-17:00      30m  (total 30m)",
        "    Mon 2026-11-23 09:00-13:00       4h  (total 4h30m)",
        "  open time scheduled until due: none (the due time has passed)",
    ]
    assert "restoration: no target for this priority and plan" in lines
    assert "next update: no target for this priority and plan" in lines


def test_explain_friday_afternoon_ticket_from_json_text(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    status, out, err = run(
        capsys, monkeypatch, "explain", "--policy", CLOUDTALK, "--now", NOW,
        json.dumps(FRIDAY_TICKET),
    )  # fmt: skip
    assert (status, err) == (0, "")
    check_friday_explanation(out)


def test_explain_separates_the_time_used_so_far_from_the_time_scheduled_until_due(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Monday 10:00 in Bratislava: 1h30m used (Friday's 30m, Monday's first hour), 1h30m to go.
    status, out, _ = run(
        capsys, monkeypatch, "explain", "--policy", CLOUDTALK, "--now", "2026-11-23T09:00:00Z",
        json.dumps(FRIDAY_TICKET),
    )  # fmt: skip
    assert status == 0
    lines = out.splitlines()
    start = lines.index("  open time used so far: 1h30m of 3h")
    assert lines[start : start + 6] == [
        "  open time used so far: 1h30m of 3h",
        "    Fri 2026-11-20 16:30-17:00      30m  (total 30m)",
        "    Mon 2026-11-23 09:00-10:00       1h  (total 1h30m)",
        "  open time scheduled until due: 1h30m",
        "    Mon 2026-11-23 10:00-11:30    1h30m  (total 1h30m)",
        "",
    ]


def test_explain_shows_the_policys_action_note_for_a_tag(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ticket = {**FRIDAY_TICKET, "plan": "premier", "channel": "email"}
    status, out, _ = run(
        capsys, monkeypatch, "explain", "--policy", ZOOM, "--now", NOW, json.dumps(ticket)
    )
    assert status == 0
    lines = out.splitlines()
    assert "Tags: sla_p1_not_by_phone" in lines
    assert (
        "  - to do (sla_p1_not_by_phone): Call the customer: a P1 must be reported by phone; "
        "confirm the outage on the call."
    ) in lines


def test_explain_reads_a_file_or_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "ticket.json"
    path.write_text(json.dumps(FRIDAY_TICKET, indent=2), encoding="utf-8")
    base = ("explain", "--policy", CLOUDTALK, "--now", NOW)
    from_file = run(capsys, monkeypatch, *base, str(path))
    from_stdin = run(capsys, monkeypatch, *base, "-", stdin=json.dumps(FRIDAY_TICKET))
    assert from_file == from_stdin
    assert from_file[0] == 0
    check_friday_explanation(from_file[1])


def test_explain_ignores_a_policy_field(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    text = json.dumps({**FRIDAY_TICKET, "policy": "cloudtalk"})
    status, out, _ = run(capsys, monkeypatch, "explain", "--policy", CLOUDTALK, "--now", NOW, text)
    assert status == 0
    check_friday_explanation(out)


def test_explain_as_a_process() -> None:
    done = subprocess.run(
        [*slabot_command(), "explain", "--policy", CLOUDTALK, "--now", NOW, "-"],
        input=json.dumps(FRIDAY_TICKET),
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    check_friday_explanation(done.stdout)


@pytest.mark.parametrize(
    ("argument", "stdin", "message"),
    [
        ("{not json", "", "slabot: TICKET_JSON is not valid JSON: "),
        ("-", "[1, 2]", "slabot: TICKET_JSON must be a JSON object"),
        ("nowhere.json", "", "slabot: nowhere.json: cannot read: No such file or directory"),
        (
            '{"id": "x", "created_at": "2026-11-20T16:30:00"}',
            "",
            "slabot: field 'created_at': '2026-11-20T16:30:00' has no offset",
        ),
    ],
)
def test_explain_bad_ticket(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    argument: str,
    stdin: str,
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    status, out, err = run(
        capsys, monkeypatch, "explain", "--policy", CLOUDTALK, "--now", NOW, argument,
        stdin=stdin,
    )  # fmt: skip
    assert status == 1
    assert out == ""
    assert err.startswith(message)
    assert "Traceback" not in err


def test_explain_bad_now(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    status, _, err = run(
        capsys, monkeypatch, "explain", "--policy", CLOUDTALK, "--now", "soon",
        json.dumps(FRIDAY_TICKET),
    )  # fmt: skip
    assert status == 1
    assert err == "slabot: field '--now': 'soon' is not ISO 8601 (like 2026-03-02T09:30:00+01:00)\n"
