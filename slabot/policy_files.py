"""Reading policy files from disk: YAML with line numbers, errors that name file, line and field."""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from bot import policy as policy_schema
from bot.compiled import Policy
from bot.errors import SlabotError
from bot.policy import PolicySpec

_NAMED_FIELD = re.compile(r"^([A-Za-z0-9_.-]+): (.+)$", re.DOTALL)
BUNDLED_POLICIES = Path(__file__).resolve().parent.parent / "config" / "policies"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in a file, located for a person: ``file:line: field: message``."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


class PolicyFileError(SlabotError):
    """A policy file cannot be read or is invalid; ``problems`` lists each one found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def load_policy(path: str | Path) -> Policy:
    """Read and validate one policy file."""
    return Policy(load_policy_spec(path))


def load_policy_spec(path: str | Path) -> PolicySpec:
    return parse_policy(read_text(path, "policy file"), str(path))


def read_text(path: str | Path, kind: str) -> str:
    """The file's UTF-8 text; ``PolicyFileError`` naming the file when it cannot be read
    (``kind``, "policy file" or "config file", says what to save as UTF-8)."""
    name = str(path)
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise PolicyFileError([Problem(name, None, "", f"cannot read: {error.strerror}")]) from None
    except UnicodeDecodeError:
        raise PolicyFileError(
            [Problem(name, None, "", f"is not UTF-8 text; save the {kind} as UTF-8")]
        ) from None


def parse_policy(text: str, name: str = "<policy>") -> PolicySpec:
    """Validate policy YAML text; ``name`` is how errors refer to it."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        if root is not None:
            duplicates = _duplicate_keys(root, name)
            if duplicates:
                raise PolicyFileError(duplicates)
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as error:
        raise PolicyFileError([_yaml_problem(error, name)]) from None
    except yaml.YAMLError as error:
        raise PolicyFileError([Problem(name, None, "", f"not valid YAML: {error}")]) from None
    except RecursionError:  # PyYAML composes recursively: this was a traceback
        raise PolicyFileError(
            [Problem(name, None, "", "not valid YAML: nested too deeply")]
        ) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict) or root is None:
        got = _KINDS.get(type(data), f"a {type(data).__name__}") if data is not None else "empty"
        line = root.start_mark.line + 1 if root is not None else 1
        raise PolicyFileError(
            [
                Problem(
                    name,
                    line,
                    "",
                    f"the file is {got}; a policy file is a YAML mapping of keys "
                    "(name, priorities, default_priority, plans, ...)",
                )
            ]
        )
    try:
        return PolicySpec.model_validate(data)
    except ValidationError as error:
        # Constructing the document merged every '<<:' into its mapping node, in place;
        # compose the text again to tell a plan's own keys from the keys it merges in.
        pristine = yaml.compose(text, Loader=yaml.SafeLoader)
        raise PolicyFileError(_problems(error, pristine or root, name)) from None


_KINDS = {list: "a list", str: "a single text value", int: "a number", float: "a number"}


class _Loader(yaml.SafeLoader):
    """A SafeLoader whose impossible dates are located errors, not a bare ValueError."""

    def construct_yaml_timestamp(self, node: yaml.ScalarNode) -> date:
        try:
            return super().construct_yaml_timestamp(node)
        except ValueError:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"{node.value!r} is not a valid date; write an existing date as YYYY-MM-DD, "
                "such as 2026-12-24",
                node.start_mark,
            ) from None


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_yaml_timestamp)

_YAML_HINTS = (
    ("found character '\\t'", "indent with spaces, not tabs"),
    (
        "mapping values are not allowed here",
        "quote a value that holds ': ', or check the indentation of this line",
    ),
    ("expected <block end>", "check the indentation of this line against the lines above"),
)


def _yaml_problem(error: yaml.MarkedYAMLError, name: str) -> Problem:
    mark = error.problem_mark or error.context_mark
    problem = error.problem or str(error)
    if error.context:
        context = error.context
        started = error.context_mark
        if started is not None and (mark is None or started.line != mark.line):
            context += f" that starts at line {started.line + 1}"
        problem += f" ({context})"
    for symptom, hint in _YAML_HINTS:
        if symptom in problem:
            problem += f"; {hint}"
    line = mark.line + 1 if mark is not None else None
    return Problem(name, line, "", f"not valid YAML: {problem}")


def _duplicate_keys(root: yaml.Node, name: str) -> list[Problem]:
    """Keys given twice in one mapping: YAML would silently keep only the last value."""
    problems: list[Problem] = []
    visited: set[int] = set()

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        if id(node) in visited:
            return
        visited.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first_line: dict[str, int] = {}
            for key, value in node.value:
                if not isinstance(key, yaml.ScalarNode) or key.value == "<<":
                    walk(value, path)
                    continue
                text = str(key.value)
                line = key.start_mark.line + 1
                if text in first_line:
                    problems.append(
                        Problem(
                            name,
                            line,
                            ".".join((*path, text)),
                            f"given twice (first at line {first_line[text]}); only the last "
                            "would count: keep one",
                        )
                    )
                else:
                    first_line[text] = line
                walk(value, (*path, text))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, (*path, str(index)))

    walk(root, ())
    return problems


@dataclass(frozen=True, slots=True)
class _Located:
    """Where a pydantic error location is in the YAML."""

    path: tuple[str, ...]
    node: yaml.Node
    line: int
    complete: bool
    """Every part of the location was found in the YAML."""
    union: tuple[tuple[str, ...], str] | None = None
    """(path of the field, branch name) when the location names a union branch."""
    merge: tuple[tuple[str, ...], int] | None = None
    """(path of the mapping, line of its '<<:') when the node was merged in from an anchor."""


def _problems(
    error: ValidationError,
    root: yaml.Node,
    name: str,
    *,
    schema: type[BaseModel] = PolicySpec,
    prefix: tuple[str, ...] = (),
) -> list[Problem]:
    """One problem per field, located in the YAML; union branches collapse to the best one.

    ``schema`` is the model that raised ``error``, validating the value at ``prefix`` of the
    document (a section of the service config, ``("zendesk",)``; the whole policy file)."""
    # A union (such as timezone: text or {from_field, default}) reports one error per
    # branch: group them by the field, then keep the branch that got furthest.
    groups: dict[tuple[str, ...], dict[str, list[_Found]]] = {}
    for item in error.errors():
        loc = (*prefix, *item["loc"])
        item = {**item, "loc": loc}
        missing = item["type"] == "missing"
        located = _locate(root, loc[:-1] if missing else loc)
        message = _message(item, located, schema, len(prefix))
        if missing:
            located = replace(located, path=(*located.path, str(loc[-1])))
        # Cross-field checks name their field at the start of the message: locate it.
        named = _NAMED_FIELD.match(message)
        if named:
            parts = [int(p) if p.isdigit() else p for p in named.group(1).split(".")]
            absolute = _locate(root, parts)
            relative = _locate(located.node, parts)
            if absolute.complete and len(absolute.path) > len(located.path):
                located, message = absolute, named.group(2)
            elif relative.complete:
                located = replace(
                    relative,
                    path=located.path + relative.path,
                    merge=located.merge or relative.merge,
                )
                message = named.group(2)
        if located.merge is not None:
            into, line = located.merge
            message += f" (merged into {'.'.join(into)} by '<<:' at line {line})"
        problem = Problem(name, located.line, ".".join(located.path), message)
        if located.union is not None:
            group, branch = located.union
            shallow = len(loc) == len(group) + 1 and item["type"].endswith("_type")
        else:
            group, branch, shallow = (*located.path, "\0", message), "", False
        rank = (item["type"] == "value_error", len(loc))
        found = _Found(rank, problem, shallow, item.get("input"))
        groups.setdefault(group, {}).setdefault(branch, []).append(found)
    problems: dict[tuple[int | None, str, str], Problem] = {}
    for branches in groups.values():
        every = [found for branch in branches.values() for found in branch]
        if len(branches) > 1 and all(found.shallow for found in every):
            # The value fits no branch at all: say what each branch would take.
            expected = " or ".join(_describe_branch(branch) for branch in branches)
            first = every[0]
            chosen = [
                replace(
                    first.problem,
                    message=f"got {first.value!r}; expected {expected}" + _bool_hint(first.value),
                )
            ]
        else:
            best = max(branches.values(), key=lambda found: max(f.rank for f in found))
            chosen = [found.problem for found in best]
        for problem in chosen:
            problems.setdefault((problem.line, problem.field, problem.message), problem)
    return sorted(problems.values(), key=lambda p: (p.line or 0, p.field, p.message))


@dataclass(frozen=True, slots=True)
class _Found:
    rank: tuple[bool, int]
    problem: Problem
    shallow: bool
    """A type error on the union field itself: the value is of no branch's type."""
    value: Any


def _locate(root: yaml.Node, loc: Sequence[int | str]) -> _Located:
    """Follow a pydantic error location through the YAML nodes, skipping union branch tags."""
    node = root
    line = root.start_mark.line + 1
    path: list[str] = []
    complete = True
    union: tuple[tuple[str, ...], str] | None = None
    merge: tuple[tuple[str, ...], int] | None = None
    for part in loc:
        found = _child(node, part)
        if found is None:
            complete = False
            if union is None:
                union = (tuple(path), str(part))
            continue  # a union branch name such as 'str' or 'FromTicketField'
        line, node, merge_line = found
        if merge_line is not None and merge is None:
            merge = (tuple(path), merge_line)
        path.append(str(part))
    return _Located(tuple(path), node, line, complete, union, merge)


def _child(node: yaml.Node, part: int | str) -> tuple[int, yaml.Node, int | None] | None:
    """(line of the key or item, value node, line of the '<<:' it came through) of a child."""
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int):
        items: list[yaml.Node] = node.value
        if 0 <= part < len(items):
            return items[part].start_mark.line + 1, items[part], None
        return None
    if isinstance(node, yaml.MappingNode):
        merged: list[tuple[int, yaml.Node]] = []
        for key, value in node.value:
            if key.value == "<<":
                sources = value.value if isinstance(value, yaml.SequenceNode) else [value]
                merged.extend((key.start_mark.line + 1, source) for source in sources)
            elif key.value == str(part):
                direct: yaml.Node = value
                return key.start_mark.line + 1, direct, None
        for merge_line, source in merged:
            found = _child(source, part)
            if found is not None:
                return found[0], found[1], found[2] if found[2] is not None else merge_line
    return None


def _message(item: Any, located: _Located, schema: type[BaseModel], skip: int) -> str:
    kind: str = item["type"]
    message = str(item["msg"])
    value = item.get("input")
    context = item.get("ctx") or {}
    loc = tuple(item["loc"])
    if message.startswith("Value error, "):
        return message[len("Value error, ") :]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        # A plan's targets name metrics: the error lists those the policy knows.
        known = context.get("known")
        allowed = list(known) if isinstance(known, list) else _keys_at(loc[skip:-1], schema)
        if not allowed:
            return f"unknown key {key!r}; check its spelling against docs/policies.md"
        close = difflib.get_close_matches(key, allowed, n=1)
        guess = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown key {key!r}{guess}; expected one of {', '.join(allowed)}"
    if kind == "missing":
        where = f"under {'.'.join(located.path)}" if located.path else "at the top level"
        return f"required and missing: add '{loc[-1]}:' {where}"
    if kind == "literal_error":
        return f"{value!r} is not allowed here; expected {context.get('expected', message)}"
    if kind == "string_pattern_mismatch":
        pattern = str(context.get("pattern", ""))
        allowed_chars = _PATTERNS.get(pattern, f"text matching {pattern}")
        return f"{value!r} is not allowed here; expected {allowed_chars}"
    if kind == "model_type":
        keys = _model_keys(str(context.get("class_name", "")))
        expected = f"a mapping with keys {', '.join(keys)}" if keys else "a mapping"
        return f"got {value!r}; expected {expected}" + _bool_hint(value)
    if kind == "dict_type":
        return f"got {value!r}; expected a mapping (key: value pairs)" + _bool_hint(value)
    if kind == "list_type":
        return f"got {value!r}; expected a list, such as [a, b]" + _bool_hint(value)
    if kind.startswith("date_"):
        return f"got {value!r}; expected a date as YYYY-MM-DD, such as 2026-12-24"
    if kind.endswith("_type") or kind.endswith("_parsing"):
        expected = message.removeprefix("Input should be ")
        return f"got {value!r}; expected {expected}" + _bool_hint(value)
    return message


_PATTERNS = {
    "^[a-z0-9_-]+$": "lower-case letters, digits, '-' and '_' only (such as 'acme')",
    "^[A-Za-z0-9_-]+$": "letters, digits, '-' and '_' only (such as 'P1')",
}


def _bool_hint(value: Any) -> str:
    if isinstance(value, bool):
        return (
            " (YAML reads yes, no, on, off, true and false as booleans: quote the value, "
            "such as 'NO')"
        )
    return ""


def _describe_branch(branch: str) -> str:
    if branch == "str":
        return "text"
    keys = _model_keys(branch)
    return f"a mapping with keys {', '.join(keys)}" if keys else branch


def _model_keys(class_name: str) -> list[str]:
    model = getattr(policy_schema, class_name, None)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _keys_at(loc: Sequence[int | str], schema: type[BaseModel] = PolicySpec) -> list[str]:
    """The keys the schema allows in the mapping at a pydantic location."""
    current: Any = schema
    for part in loc:
        current = _step(current, part)
        if current is None:
            return []
    for member in _members(current):
        if isinstance(member, type) and issubclass(member, BaseModel):
            return list(member.model_fields)
    return []


def _members(annotation: Any) -> list[Any]:
    if get_origin(annotation) in (Union, types.UnionType):
        return [arg for arg in get_args(annotation) if arg is not type(None)]
    return [annotation]


def _step(annotation: Any, part: int | str) -> Any:
    for member in _members(annotation):
        if isinstance(member, type) and issubclass(member, BaseModel):
            if part == member.__name__:
                return member
            if isinstance(part, str) and part in member.model_fields:
                return member.model_fields[part].annotation
        origin = get_origin(member)
        if origin is dict and isinstance(part, str):
            return get_args(member)[1]
        if origin is list and isinstance(part, int):
            return get_args(member)[0]
    return None


def bundled_policy_paths() -> list[Path]:
    """The example policies in the source tree's ``config/policies``."""
    paths = sorted(BUNDLED_POLICIES.glob("*.yaml"))
    if not paths:
        raise PolicyFileError(
            [
                Problem(
                    str(BUNDLED_POLICIES),
                    None,
                    "",
                    "the example policies are not here: they ship with the source tree "
                    "(install with 'pip install -e .' from a checkout), or pass --policy FILE",
                )
            ]
        )
    return paths
