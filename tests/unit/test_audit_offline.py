""".ci/audit_offline.py: an installed release an advisory names is reported, others are not."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("audit_offline", ROOT / ".ci/audit_offline.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


audit = _load()

RECORD = {
    "id": "PYSEC-0000-1",
    "affected": [
        {
            "package": {"name": "Some_Package", "ecosystem": "PyPI"},
            "ranges": [
                {"type": "ECOSYSTEM", "events": [{"introduced": "1.0"}, {"fixed": "1.4.2"}]},
                {"type": "ECOSYSTEM", "events": [{"introduced": "2.0"}, {"last_affected": "2.1"}]},
            ],
            "versions": ["0.9b1"],
        }
    ],
}


@pytest.mark.parametrize(
    ("version", "affected"),
    [
        ("0.8", False),
        ("0.9b1", True),  # listed by version only
        ("1.0", True),
        ("1.4.1", True),
        ("1.4.2", False),  # the fixed release
        ("1.9", False),
        ("2.1", True),  # last_affected is affected
        ("2.1.1", False),
    ],
)
def test_ranges_and_version_lists_decide(version: str, affected: bool) -> None:
    assert audit._affects(RECORD, "some-package", Version(version)) is affected


def test_bounds_read_as_numbers_and_unsorted_events_are_evaluated_as_osv_says() -> None:
    # yaml.safe_load reads an unquoted `introduced: 0` as 0 and `fixed: 1.10` as 1.1.
    events = [{"fixed": "1.10"}, {"introduced": 0}]
    assert audit._in_range(Version("1.9"), events)
    assert not audit._in_range(Version("1.10"), events)
    assert audit._in_range(Version("1.0"), [{"introduced": 1.0}, {"limit": "abc"}])


def test_an_unreadable_bound_is_said_and_taken_as_affected(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert audit._in_range(Version("9.9"), [{"introduced": "0"}, {"fixed": "not a version"}])
    assert "unreadable fixed bound 'not a version'" in capsys.readouterr().out


def test_another_package_is_not_affected() -> None:
    assert not audit._affects(RECORD, "other-package", Version("1.2"))


def test_the_installed_releases_named_by_an_advisory_fail_the_audit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    installed = {"pytest": Version(pytest.__version__)}
    folder = tmp_path / "vulns" / "pytest"
    folder.mkdir(parents=True)
    (folder / "PYSEC-0000-2.yaml").write_text(
        "id: PYSEC-0000-2\nmodified: '2026-07-01T00:00:00Z'\naliases: [CVE-0000-1]\n"
        "affected:\n- package: {name: pytest, ecosystem: PyPI}\n"
        f"  versions: ['{installed['pytest']}']\n",
        encoding="utf-8",
    )
    (folder / "PYSEC-0000-3.yaml").write_text(
        "id: PYSEC-0000-3\nwithdrawn: '2026-07-02T00:00:00Z'\n"
        "affected:\n- package: {name: pytest, ecosystem: PyPI}\n"
        "  ranges: [{type: ECOSYSTEM, events: [{introduced: '0'}]}]\n",
        encoding="utf-8",
    )
    assert audit.main(["--advisories", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"VULNERABLE pytest {pytest.__version__}: PYSEC-0000-2 (CVE-0000-1)" in out
    assert "PYSEC-0000-3" not in out  # withdrawn
    assert "1 known vulnerabilities; newest advisory read for them modified 2026-07-01" in out
    (folder / "PYSEC-0000-2.yaml").unlink()
    assert audit.main(["--advisories", str(tmp_path)]) == 0


def test_a_folder_that_is_not_the_database_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        audit.main(["--advisories", str(tmp_path)])
    assert stopped.value.code == 2
    assert f"{tmp_path} has no vulns/ folder" in capsys.readouterr().err
