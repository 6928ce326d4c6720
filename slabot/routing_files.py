"""Reading ``routing:`` from config/slabot.yaml: rules checked against the policies loaded,
errors located like a policy file's (``file:line: routing.rules.2.policy: ...``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from bot.compiled import Policy
from bot.routing import Router, RoutingSpec, rule_name
from slabot.policy_files import (
    PolicyFileError,
    Problem,
    _child,
    _problems,
    _yaml_problem,
    bundled_policy_paths,
    load_policy,
    read_text,
)

SECTION = "routing"


@dataclass(frozen=True)
class Routing:
    """A config file's routing rules, compiled, with the policies they name loaded."""

    router: Router
    policies: dict[str, Policy]
    """Every policy loaded (``service.policies``, default the bundled three), by name."""
    path: str


def routing_problems(
    section: Any, root: yaml.Node, name: str, policy_names: set[str] | None
) -> tuple[RoutingSpec | None, list[Problem]]:
    """Validate the ``routing:`` value of the document ``root``; with ``policy_names``, also
    that every rule names a policy loaded. Returns the spec (None when invalid) and problems."""
    if not isinstance(section, dict):
        found = _child(root, SECTION)
        line = found[0] if found is not None else None
        return None, [
            Problem(
                name,
                line,
                SECTION,
                f"got {section!r}; expected a mapping with rules: (a list of rules ending "
                "with '- {policy: NAME, default: true}')",
            )
        ]
    try:
        spec = RoutingSpec.model_validate(section)
    except ValidationError as error:
        return None, _problems(error, root, name, schema=RoutingSpec, prefix=(SECTION,))
    problems: list[Problem] = []
    if policy_names is not None:
        for index, rule in enumerate(spec.rules):
            if rule.policy in policy_names:
                continue
            line = _line(root, SECTION, "rules", index, "policy")
            problems.append(
                Problem(
                    name,
                    line,
                    f"{SECTION}.rules.{index}.policy",
                    f"rule {rule_name(rule, index)!r} names policy {rule.policy!r}, which is "
                    f"not loaded ({', '.join(sorted(policy_names))}); add its file to "
                    "service.policies or name a policy loaded",
                )
            )
    return (None if problems else spec), problems


def load_routing(path: str | Path, policy_files: Sequence[str] | None = None) -> Routing:
    """Read the routing rules of the service config at ``path`` and load every policy
    (``policy_files``, else the file's ``service.policies``, else the bundled three);
    ``PolicyFileError`` lists every problem, located."""
    name = str(path)
    text = read_text(path, "config file")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        raise PolicyFileError([_yaml_problem(error, name)]) from None
    except (yaml.YAMLError, RecursionError, ValueError) as error:
        raise PolicyFileError([Problem(name, None, "", f"not valid YAML: {error}")]) from None
    if root is None or not isinstance(data, dict) or SECTION not in data:
        raise PolicyFileError(
            [
                Problem(
                    name,
                    None,
                    SECTION,
                    "no routing: section; add one (docs/policies.md, 'Several policies') "
                    "or pass --policy FILE instead",
                )
            ]
        )
    policies = load_policies(policy_files or _service_policies(data))
    return parse_routing(data[SECTION], root, name, policies)


def parse_routing(
    section: Any, root: yaml.Node, name: str, policies: Mapping[str, Policy]
) -> Routing:
    """The compiled rules of an already read ``routing:`` value; ``PolicyFileError`` else."""
    spec, problems = routing_problems(section, root, name, set(policies))
    if spec is None:
        raise PolicyFileError(problems)
    return Routing(Router(spec, policies), dict(policies), name)


def load_policies(files: Sequence[str]) -> dict[str, Policy]:
    """The policy files by policy name; a name given twice is an error naming both files."""
    policies: dict[str, Policy] = {}
    where: dict[str, str] = {}
    for file in files:
        policy = load_policy(file)
        if policy.name in policies:
            raise PolicyFileError(
                [
                    Problem(
                        str(file),
                        None,
                        "name",
                        f"policy {policy.name!r} is also the name of {where[policy.name]}; "
                        "each policy needs its own name",
                    )
                ]
            )
        policies[policy.name] = policy
        where[policy.name] = str(file)
    return policies


def _service_policies(data: Mapping[str, Any]) -> list[str]:
    service = data.get("service")
    listed = service.get("policies") if isinstance(service, dict) else None
    if isinstance(listed, str):
        listed = [part.strip() for part in listed.split(",") if part.strip()]
    return [str(p) for p in listed] if listed else [str(p) for p in bundled_policy_paths()]


def _line(root: yaml.Node, *path: str | int) -> int | None:
    node, line = root, None
    for part in path:
        found = _child(node, part)
        if found is None:
            break
        line, node = found[0], found[1]
    return line
