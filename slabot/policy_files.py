"""Reading policy files from disk: YAML with line numbers, errors that name file, line and field."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

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
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise PolicyFileError([Problem(name, None, "", f"cannot read: {error.strerror}")]) from None
    except UnicodeDecodeError:
        raise PolicyFileError([Problem(name, None, "", "is not UTF-8 text")]) from None
    return parse_policy(text, name)


def parse_policy(text: str, name: str = "<policy>") -> PolicySpec:
    """Validate policy YAML text; ``name`` is how errors refer to it."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        line = mark.line + 1 if mark else None
        problem = f"{error.problem or error}" + (f" ({error.context})" if error.context else "")
        raise PolicyFileError([Problem(name, line, "", f"not valid YAML: {problem}")]) from None
    except yaml.YAMLError as error:
        raise PolicyFileError([Problem(name, None, "", f"not valid YAML: {error}")]) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict) or root is None:
        raise PolicyFileError(
            [Problem(name, 1, "", "a policy file is a YAML mapping (name, priorities, plans...)")]
        )
    try:
        return PolicySpec.model_validate(data)
    except ValidationError as error:
        raise PolicyFileError(_problems(error, root, name)) from None


def _problems(error: ValidationError, root: yaml.Node, name: str) -> list[Problem]:
    """One problem per field, located in the YAML; union branches collapse to the best one."""
    best: dict[tuple[str, ...], tuple[tuple[bool, int], Problem]] = {}
    for item in error.errors():
        path, node = _locate(root, item["loc"])
        message = _message(item)
        # Cross-field checks name their field at the start of the message: locate it.
        named = _NAMED_FIELD.match(message)
        if named:
            named_path, named_node = _locate(root, named.group(1).split("."))
            if len(named_path) > len(path):
                path, node, message = named_path, named_node, named.group(2)
        problem = Problem(name, node.start_mark.line + 1, ".".join(path), message)
        key = tuple(path)
        # A union reports one error per branch: prefer our own explanations, then the
        # branch that got furthest.
        rank = (item["type"] == "value_error", len(item["loc"]))
        if key not in best or rank > best[key][0]:
            best[key] = (rank, problem)
    return sorted((p for _, p in best.values()), key=lambda p: (p.line or 0, p.field))


def _locate(root: yaml.Node, loc: Sequence[int | str]) -> tuple[list[str], yaml.Node]:
    """Follow a pydantic error location through the YAML nodes, skipping union branch tags."""
    node = root
    path: list[str] = []
    for part in loc:
        found = _child(node, part)
        if found is None:
            continue  # a union branch name such as 'TargetSpec' or "literal['none']"
        node = found
        path.append(str(part))
    return path, node


def _child(node: yaml.Node, part: int | str) -> yaml.Node | None:
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int):
        items: list[yaml.Node] = node.value
        return items[part] if 0 <= part < len(items) else None
    if isinstance(node, yaml.MappingNode):
        merged: list[yaml.Node] = []
        for key, value in node.value:
            if key.value == "<<":
                merged.extend(value.value if isinstance(value, yaml.SequenceNode) else [value])
            elif key.value == str(part):
                direct: yaml.Node = value
                return direct
        for source in merged:
            found = _child(source, part)
            if found is not None:
                return found
    return None


def _message(item: Any) -> str:
    kind = item["type"]
    message = str(item["msg"])
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if kind == "extra_forbidden":
        return "unknown key; check its spelling and the documented keys of this section"
    if kind == "missing":
        return "required and missing"
    if kind in ("literal_error", "string_type", "bool_type", "int_type", "dict_type", "list_type"):
        return f"{message} (got {item.get('input')!r})"
    return message


def bundled_policy_paths() -> list[Path]:
    """The example policies shipped in ``config/policies``."""
    return sorted(BUNDLED_POLICIES.glob("*.yaml"))
