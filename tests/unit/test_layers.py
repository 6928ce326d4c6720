"""The seams between slabot's layers, as an AST scan of every module (no module is imported).

- The fakes (``slabot.fakes``) import only the standard library, each other and the one
  library the fake Slack's Socket Mode server needs: the demo and the tests can use them
  without the app they stand in front of.
- The connectors reach the store through its services, ``slabot.store.queries`` and the
  outbox: no connector imports the store's tables (``slabot.store.models``), its write
  engine (``slabot.store.db.for_writing``) or an ORM session (``sqlalchemy.orm``).
- Nothing but the tests uses the event service (``slabot.store.events``).
- No import circle among the modules of ``bot``, ``connectors`` and ``slabot``: neither of
  the imports run at import time (module level) nor of those counting the function-local
  ones, except the circles listed below as known (each a debt; the test fails on a new
  circle, on a known one that grows, and on one that is gone but still listed).

``test_core_boundary.py`` keeps the core's own rules; its ``imported_modules`` is the scan
used here for the packages a module imports.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator, Mapping, Set
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_core_boundary import imported_modules, parse

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("bot", "connectors", "slabot")
FAKES = ROOT / "slabot" / "fakes"
FAKES_THIRD_PARTY = frozenset({"websockets"})  # FakeSocketMode's server (slabot.fakes.slack)

# Circles that exist today, each as the set of its modules (a strongly connected part of the
# import graph), each closing through function-local imports only; remove an entry with its
# fix. None today: the last (services <-> ingest_batch, reclassify, recompute) closed when
# engine_ticket, row_snapshot, upsert and the errors moved below services (rows, errors).
KNOWN_CIRCLES: frozenset[frozenset[str]] = frozenset()


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int
    local: bool
    """Inside a function: run when it is called, not when the module is imported."""


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for layer in LAYERS
        for path in sorted((ROOT / layer).rglob("*.py"))
        if "migrations" not in path.relative_to(ROOT).parts
    }


def imports(tree: ast.AST, importer: str, known: Set[str]) -> Iterator[Import]:
    """Every import of a module in ``known`` (``from a import b`` names ``a.b`` when that is a
    module), marked local inside a function; imports under ``if TYPE_CHECKING:`` never run
    and are left out."""
    package = importer if _is_package(importer, known) else importer.rpartition(".")[0]

    def visit(node: ast.AST, local: bool) -> Iterator[Import]:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from (i for child in node.orelse for i in visit(child, local))
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield from _known(importer, alias.name, node.lineno, local, known)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                target = f"{base}.{alias.name}"
                name = target if target in known else base
                yield from _known(importer, name, node.lineno, local, known)
        inner = local or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        for child in ast.iter_child_nodes(node):
            yield from visit(child, inner)

    yield from visit(tree, False)


def _is_package(name: str, known: Set[str]) -> bool:
    return any(other.startswith(name + ".") for other in known)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _known(importer: str, name: str, line: int, local: bool, known: Set[str]) -> Iterator[Import]:
    # ``import a.b.c`` of a name that is not a module (a class) stands for its module.
    while name and name not in known:
        name = name.rpartition(".")[0]
    if name and name != importer:
        yield Import(importer, name, line, local)


def import_graph(sources: Mapping[str, ast.AST], *, with_local: bool) -> dict[str, set[str]]:
    known = set(sources)
    graph: dict[str, set[str]] = {name: set() for name in sources}
    for name, tree in sources.items():
        for found in imports(tree, name, known):
            if with_local or not found.local:
                graph[name].add(found.imported)
    return graph


def circles(graph: Mapping[str, Set[str]]) -> set[frozenset[str]]:
    """The strongly connected parts of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[frozenset[str]] = set()

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            part = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                part.add(member)
                if member == node:
                    break
            if len(part) > 1:
                found.add(frozenset(part))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def shown(parts: Set[frozenset[str]]) -> list[list[str]]:
    return sorted(sorted(part) for part in parts)


@pytest.fixture(scope="module")
def sources() -> dict[str, ast.AST]:
    return {name: parse(path) for name, path in layer_modules().items()}


# --- the fakes ---

FAKE_FILES = sorted(FAKES.glob("*.py"))


def test_the_fakes_have_modules_to_check() -> None:
    assert {path.name for path in FAKE_FILES} >= {
        "base.py",
        "chaos.py",
        "jira.py",
        "slack.py",
        "slack_blocks.py",
        "zendesk.py",
    }


def fake_import_problems(tree: ast.AST) -> list[str]:
    """What a fake imports beyond the standard library, the fakes and their one library."""
    outside = imported_modules(tree) - sys.stdlib_module_names - FAKES_THIRD_PARTY - {"slabot"}
    problems = sorted(outside)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            problems.append(f"relative import at line {node.lineno}")
        names = (
            [alias.name for alias in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom) and node.level == 0
            else []
        )
        problems.extend(
            name
            for name in names
            if name.split(".")[0] == "slabot" and not name.startswith("slabot.fakes")
        )
    return problems


@pytest.mark.parametrize("path", FAKE_FILES, ids=lambda path: path.name)
def test_a_fake_imports_only_the_standard_library_and_the_fakes(path: Path) -> None:
    assert fake_import_problems(parse(path)) == []


# --- circles ---


def test_no_new_circle_at_import_time(sources: dict[str, ast.AST]) -> None:
    found = circles(import_graph(sources, with_local=False))
    assert shown(found) == []


def test_no_new_circle_counting_function_local_imports(sources: dict[str, ast.AST]) -> None:
    found = circles(import_graph(sources, with_local=True))
    assert shown(found - KNOWN_CIRCLES) == []


def test_every_known_circle_is_still_there(sources: dict[str, ast.AST]) -> None:
    """A circle that is gone leaves this list (so that it cannot come back unnoticed)."""
    found = circles(import_graph(sources, with_local=True))
    assert shown(KNOWN_CIRCLES - found) == []


def test_the_intake_process_does_not_know_the_runtime(sources: dict[str, ast.AST]) -> None:
    graph = import_graph(sources, with_local=True)
    assert "slabot.service.runtime" not in graph["slabot.service.intake_process"]
    assert "slabot.service.intake_process" in graph["slabot.service.runtime"]


def test_only_the_tests_use_the_event_service(sources: dict[str, ast.AST]) -> None:
    """``slabot.store.events`` (single events applied one by one) is left to the tests:
    both helpdesks' statuses ride in ``Snapshot.status_history``, and deliveries are
    recorded and forgotten by ``slabot.store.deliveries``."""
    graph = import_graph(sources, with_local=True)
    assert sorted(name for name, others in graph.items() if "slabot.store.events" in others) == []


def test_slack_and_the_connectors_are_siblings(sources: dict[str, ast.AST]) -> None:
    """Neither imports the other: what both need (settings, ``Secret``, the parse of a config
    section) lives in ``slabot.configuration``, which imports neither."""
    graph = import_graph(sources, with_local=True)

    def crossing(importers: str, imported: str) -> list[str]:
        return sorted(
            f"{name} -> {other}"
            for name, others in graph.items()
            if name == importers or name.startswith(f"{importers}.")
            for other in others
            if other == imported or other.startswith(f"{imported}.")
        )

    assert crossing("slabot.slack", "connectors") == []
    assert crossing("connectors", "slabot.slack") == []
    assert crossing("slabot.configuration", "connectors") == []
    assert crossing("slabot.configuration", "slabot.slack") == []


CONNECTOR_FILES = sorted((ROOT / "connectors").rglob("*.py"))
STORE_INSIDES = ("slabot.store.models", "slabot.store.db.for_writing", "sqlalchemy.orm")
"""What a connector never imports: the store's tables, its write engine, an ORM session."""


def store_inside_imports(tree: ast.AST) -> list[str]:
    """Each import of ``STORE_INSIDES`` (or of a name inside one) in ``tree``, with its line;
    function-local ones and those for type checking only count too."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = "." * node.level + node.module
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.extend(f"{name} (line {node.lineno})" for name in names if _is_store_inside(name))
    # A module imported whole and the inside reached as its attribute:
    # ``from slabot.store import db`` then ``db.for_writing(engine)``.
    modules = {
        alias.asname or alias.name: f"{node.module}.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            name = f"{modules.get(node.value.id, node.value.id)}.{node.attr}"
            if _is_store_inside(name):
                found.append(f"{name} (line {node.lineno})")
    return found


def _is_store_inside(name: str) -> bool:
    return any(name == inside or name.startswith(f"{inside}.") for inside in STORE_INSIDES)


def test_there_are_connectors_to_check() -> None:
    assert {path.relative_to(ROOT).as_posix() for path in CONNECTOR_FILES} >= {
        "connectors/sync.py",
        "connectors/jira/sync.py",
        "connectors/jira/poller.py",
        "connectors/zendesk/sync.py",
    }


@pytest.mark.parametrize(
    "path", CONNECTOR_FILES, ids=lambda path: str(path.relative_to(ROOT / "connectors"))
)
def test_a_connector_imports_no_store_table_write_engine_or_orm_session(path: Path) -> None:
    """Connectors read through ``slabot.store.queries`` and change tickets through the
    store's services and outbox, so they do not depend on the tables' columns."""
    assert store_inside_imports(parse(path)) == []


MAPPINGS = sorted([ROOT / "connectors" / "mapping.py", *ROOT.glob("connectors/*/mapping.py")])
NETWORK = frozenset({"httpx", "requests", "urllib3", "socket", "zenpy", "jira", "sqlalchemy"})


def test_there_are_mappings_to_check() -> None:
    assert {path.parent.name for path in MAPPINGS} >= {"connectors", "zendesk", "jira"}


@pytest.mark.parametrize("path", MAPPINGS, ids=lambda path: str(path.relative_to(ROOT)))
def test_a_mapping_imports_no_client_sdk_or_database(
    path: Path, sources: dict[str, ast.AST]
) -> None:
    """The mappings are pure: payload in, snapshot out (the clients do the network)."""
    tree = sources[module_name(path)]
    assert sorted(imported_modules(tree) & NETWORK) == []
    graph = import_graph(sources, with_local=True)
    assert sorted(name for name in graph[module_name(path)] if name.endswith(".client")) == []


# --- the scans themselves catch what they are meant to catch ---


@pytest.mark.parametrize(
    "source",
    [
        "import requests",
        "from slabot.store import models",
        "import slabot.service.runtime",
        "from sqlalchemy import text",
        "def later():\n    from slabot.slack import ids",
        "from . import jira",
    ],
)
def test_the_fake_scan_finds_a_foreign_import(source: str) -> None:
    assert fake_import_problems(ast.parse(source))


@pytest.mark.parametrize(
    "source",
    [
        "import json\nfrom http.server import ThreadingHTTPServer",
        "from slabot.fakes.chaos import Chaos",
        "import slabot.fakes.base",
        "def serve():\n    from websockets.sync.server import serve",
    ],
)
def test_the_fake_scan_allows_the_standard_library_and_the_fakes(source: str) -> None:
    assert fake_import_problems(ast.parse(source)) == []


@pytest.mark.parametrize(
    ("source", "caught"),
    [
        ("from slabot.store.models import StoredTicket", True),
        ("from slabot.store import models", True),
        ("import slabot.store.models", True),
        ("from slabot.store.db import for_writing", True),
        ("from sqlalchemy.orm import Session", True),
        ("from sqlalchemy import orm", True),
        ("def later():\n    from slabot.store.models import OutboxItem", True),
        ("if TYPE_CHECKING:\n    from slabot.store.models import StoredDecision", True),
        ("from slabot.store import db\nengine = db.for_writing(engine)", True),
        ("from slabot.store import db as database\ndatabase.for_writing(engine)", True),
        ("from slabot.store import db\ndb.make_engine()", False),
        ("from slabot.store.queries import load_cursor", False),
        ("from slabot.store.db import DatabaseError", False),
        ("from sqlalchemy import Engine", False),
        ("from slabot.store.modelsx import thing", False),
    ],
)
def test_the_store_inside_scan_finds_tables_engine_and_session_only(
    source: str, caught: bool
) -> None:
    assert bool(store_inside_imports(ast.parse(source))) is caught


TOY = {
    "app.a": "from app.b import thing\n",
    "app.b": "import app.c\n",
    "app.c": "def later():\n    from app import a\n",
    "app.d": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from app.a import A\n",
    "app.e": "from app.d import x\n",
    "app": "",
}


def toy(**changes: str) -> dict[str, ast.AST]:
    return {name: ast.parse(source) for name, source in {**TOY, **changes}.items()}


def test_the_circle_scan_finds_a_circle_through_a_function_local_import() -> None:
    sources = toy()
    assert circles(import_graph(sources, with_local=False)) == set()
    assert circles(import_graph(sources, with_local=True)) == {
        frozenset({"app.a", "app.b", "app.c"})
    }


def test_the_circle_scan_finds_a_circle_at_import_time() -> None:
    sources = toy(**{"app.c": "from app.a import thing\n"})
    assert circles(import_graph(sources, with_local=False)) == {
        frozenset({"app.a", "app.b", "app.c"})
    }


def test_the_circle_scan_leaves_out_imports_for_type_checking_only() -> None:
    sources = toy(**{"app.a": "from app.e import y\n", "app.c": ""})
    assert circles(import_graph(sources, with_local=True)) == set()


def test_the_circle_scan_resolves_relative_imports() -> None:
    sources = toy(**{"app.c": "from . import a\n"})
    assert circles(import_graph(sources, with_local=False)) == {
        frozenset({"app.a", "app.b", "app.c"})
    }
