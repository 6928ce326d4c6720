"""Audit the distributions installed in this interpreter against a local copy of the Python
Packaging Advisory Database (https://github.com/pypa/advisory-database, OSV records in YAML).

For a machine no vulnerability service answers from (pip-audit then audits nothing; see
.ci/audit): fetch the database wherever the network allows, copy it over, and run

    .venv/bin/python .ci/audit_offline.py --advisories PATH/TO/advisory-database

It prints every installed release an advisory names (by its version list or its ECOSYSTEM
ranges), then a summary line; exits 1 when there is any. Advisories newer than the copy are
not known to it: the summary names the newest record it read, so a report says how fresh it is.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version


def _in_range(version: Version, events: list[dict[str, Any]]) -> bool:
    # OSV's ECOSYSTEM evaluation: the events sorted by version; the version is affected from
    # an "introduced" up to (not including) the next "fixed", or up to and including a
    # "last_affected". ("limit" bounds git ranges only.) A bound YAML read as a number (an
    # unquoted 0 or 1.10) is read as its text; one that is not a version is said, not skipped.
    bounds: list[tuple[Version, int, str]] = []
    for event in events:
        for kind, value in event.items():
            if kind not in ("introduced", "fixed", "last_affected"):
                continue
            text = str(value)
            bound = Version("0") if text == "0" else _version(text)
            if bound is None:
                print(f"audit: WARNING unreadable {kind} bound {text!r}: range taken as affected")
                return True
            bounds.append((bound, 0 if kind == "introduced" else 1, kind))
    affected = False
    for bound, _, kind in sorted(bounds):
        past = version > bound if kind == "last_affected" else version >= bound
        if past:
            affected = kind == "introduced"
    return affected


def _version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def _affects(record: dict[str, Any], name: str, version: Version) -> bool:
    for affected in record.get("affected") or []:
        if canonicalize_name(str((affected.get("package") or {}).get("name", ""))) != name:
            continue
        listed = {_version(str(v)) for v in affected.get("versions") or []}
        if version in listed:
            return True
        for span in affected.get("ranges") or []:
            if span.get("type") == "ECOSYSTEM" and _in_range(version, span.get("events") or []):
                return True
    return False


def _records(folder: Path) -> Iterator[dict[str, Any]]:
    for path in sorted(folder.glob("*.yaml")):
        record = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not record.get("withdrawn"):
            yield record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--advisories", type=Path, required=True, help="a copy of the database")
    args = parser.parse_args(argv)
    vulns = args.advisories / "vulns"
    if not vulns.is_dir():
        parser.error(f"{args.advisories} has no vulns/ folder: is it the advisory database?")
    folders = {canonicalize_name(p.name): p for p in vulns.iterdir() if p.is_dir()}
    installed = {
        canonicalize_name(d.metadata["Name"]): d.version
        for d in metadata.distributions()
        if d.metadata["Name"]
    }
    newest, found, audited = "", 0, 0
    for name, text in sorted(installed.items()):
        version = _version(text)
        if version is None:
            print(f"audit: {name} {text}: not a PEP 440 version, not audited")
            continue
        audited += 1
        for record in _records(folders[name]) if name in folders else ():
            newest = max(newest, str(record.get("modified") or ""))
            if _affects(record, name, version):
                found += 1
                aliases = ", ".join(record.get("aliases") or [])
                print(f"audit: VULNERABLE {name} {text}: {record['id']} ({aliases})")
    print(
        f"audit: {len(installed)} distributions, {audited} audited, {found} known "
        f"vulnerabilities; newest advisory read for them modified {newest[:10] or 'never'}"
    )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
