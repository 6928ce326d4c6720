"""The pure core ``bot`` imports no adapter or SDK and never reads the clock: callers pass now."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import bot

CORE_DIR = Path(bot.__file__).resolve().parent
CORE_FILES = sorted(CORE_DIR.glob("*.py"))
# A deny-list: computation libraries stay allowed (numpy, for the calendar batch path, does
# no I/O and reads no clock; pydantic, holidays and zoneinfo data are pure lookups).
FORBIDDEN_IMPORTS = frozenset(
    {
        "connectors",
        "slabot",
        "sqlalchemy",
        "zenpy",
        "jira",
        "slack_sdk",
        "slack_bolt",
        "requests",
        "apscheduler",
    }
)
# (module, function) pairs that read the clock.
CLOCK_READS = frozenset(
    {
        ("datetime", "now"),
        ("datetime", "utcnow"),
        ("datetime", "today"),
        ("date", "today"),
        ("time", "time"),
        ("time", "time_ns"),
        ("time", "monotonic"),
        ("time", "perf_counter"),
    }
)


# time functions that read the clock unless given this many positional arguments.
NEEDS_TIME_ARGUMENT = {"gmtime": 1, "localtime": 1, "ctime": 1, "asctime": 1, "strftime": 2}


def imported_modules(tree: ast.AST) -> set[str]:
    """Top-level package of every absolute import in ``tree``."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name | ast.Attribute)
            and getattr(node.func, "id", getattr(node.func, "attr", ""))
            in {"__import__", "import_module"}
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value.split(".")[0])
    return found


def clock_reads(tree: ast.AST) -> list[str]:
    """Clock reads such as ``datetime.now(...)`` or ``time()`` after ``from time import time``."""
    from_imported = {
        alias.asname or alias.name: (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module in {"time", "datetime"}
        for alias in node.names
    }
    found = []
    for node in ast.walk(tree):
        # gmtime(), localtime(), ctime(), asctime() and strftime(fmt) read the clock when not
        # given the time to convert.
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if isinstance(func, ast.Attribute):  # time.gmtime(): only on the time module
                module = func.value.id if isinstance(func.value, ast.Name) else ""
            else:
                module = from_imported.get(name, ("",))[0]
            if isinstance(func, ast.Name) and name in from_imported:
                name = from_imported[name][1]
            wanted = NEEDS_TIME_ARGUMENT.get(name)
            if module == "time" and wanted is not None and len(node.args) < wanted:
                found.append(f"line {node.lineno}: time.{name} without a time")
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name | ast.Attribute):
            owner = node.value.id if isinstance(node.value, ast.Name) else node.value.attr
            # Resolve aliases: `from datetime import datetime as dt` then `dt.now`.
            owner = from_imported.get(owner, (None, owner))[1]
            if (owner, node.attr) in CLOCK_READS:
                found.append(f"line {node.lineno}: {owner}.{node.attr}")
        elif isinstance(node, ast.Name) and from_imported.get(node.id) in CLOCK_READS:
            module, name = from_imported[node.id]
            found.append(f"line {node.lineno}: {module}.{name}")
    return found


def parse(path: Path) -> ast.AST:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def test_the_core_package_has_modules_to_check() -> None:
    assert {path.name for path in CORE_FILES} >= {"engine.py", "ticket.py", "compiled.py"}


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda path: path.name)
def test_core_module_imports_no_adapter_store_or_sdk(path: Path) -> None:
    assert imported_modules(parse(path)) & FORBIDDEN_IMPORTS == set()


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda path: path.name)
def test_core_module_never_reads_the_clock(path: Path) -> None:
    assert clock_reads(parse(path)) == []


def test_importing_the_core_loads_no_adapter_store_or_sdk() -> None:
    code = (
        "import sys, bot, bot.engine, bot.compiled, bot.ticket, bot.policy, bot.business_time; "
        "print('\\n'.join(sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    loaded = {name.split(".")[0] for name in result.stdout.split()}
    assert loaded & FORBIDDEN_IMPORTS == set()


# The scanners themselves catch what they are meant to catch.


@pytest.mark.parametrize(
    "source",
    [
        "import requests",
        "import slack_sdk.web",
        "from connectors.zendesk import mapping",
        "from slabot import store",
        "import importlib\nimportlib.import_module('zenpy')",
        "__import__('sqlalchemy')",
    ],
)
def test_the_import_scan_finds_a_forbidden_import(source: str) -> None:
    assert imported_modules(ast.parse(source)) & FORBIDDEN_IMPORTS


@pytest.mark.parametrize(
    "source",
    [
        "from datetime import datetime\ndatetime.now()",
        "import datetime\ndatetime.datetime.utcnow()",
        "from datetime import date\ndate.today()",
        "import time\ntime.time()",
        "from time import time\ntime()",
        "from datetime import datetime as dt\ndt.now()",
        "from time import monotonic as tick\ntick()",
        "import time\ntime.gmtime()",
        "from time import localtime\nlocaltime()",
        "from time import strftime\nstrftime('%Y')",
    ],
)
def test_the_clock_scan_finds_a_clock_read(source: str) -> None:
    assert clock_reads(ast.parse(source))


@pytest.mark.parametrize(
    "source",
    [
        "from datetime import datetime\ndatetime.fromtimestamp(0)",
        "from time import gmtime, strftime\nstrftime('%Y', gmtime(0))",
        "now = 1\nprint(now)",
    ],
)
def test_the_clock_scan_allows_pure_time_functions(source: str) -> None:
    assert clock_reads(ast.parse(source)) == []
