"""Checking a service config file (config/slabot.yaml) as ``slabot check-config`` does.

The file's sections are validated with the models ``slabot run`` reads them with
(``service:`` with the service settings, ``zendesk:``, ``jira:``, ``slack:`` with their
connectors' configs), and every problem is located in the file like a policy file's:
``file:line: field.path: message``. The environment is not read: ``SLABOT_*`` overrides and
credentials are ``slabot doctor``'s business. A file is a service config when its top-level
keys are among those sections (``is_service_config``), or when ``--kind service`` says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from bot.policy import PolicySpec
from bot.routing import RoutingSpec
from connectors.jira.config import JiraConfig
from connectors.zendesk.config import ZendeskConfig
from slabot.policy_files import (
    PolicyFileError,
    Problem,
    _child,
    _duplicate_keys,
    _problems,
    _yaml_problem,
    bundled_policy_paths,
    load_policy,
)
from slabot.service.settings import ServiceSettings
from slabot.slack.config import SlackConfig

SECTIONS: dict[str, type[BaseModel]] = {
    "service": ServiceSettings,
    "zendesk": ZendeskConfig,
    "jira": JiraConfig,
    "slack": SlackConfig,
    "routing": RoutingSpec,
}


def is_service_config(data: object) -> bool:
    """Whether parsed YAML reads as a service config: a mapping with at least one of the
    service's sections and none of a policy's keys."""
    if not isinstance(data, dict) or not data:
        return False
    keys = {str(key) for key in data}
    return bool(keys & SECTIONS.keys()) and not keys & set(PolicySpec.model_fields)


def check_service_config(path: str | Path) -> list[Problem]:
    """Every problem of the service config at ``path`` (empty: ``slabot run`` accepts it)."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        return [Problem(name, None, "", f"cannot read: {error.strerror}")]
    except UnicodeDecodeError:
        return [Problem(name, None, "", "is not UTF-8 text; save the config file as UTF-8")]
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        return [_yaml_problem(error, name)]
    except (yaml.YAMLError, RecursionError, ValueError) as error:  # ValueError: a bad date
        return [Problem(name, None, "", f"not valid YAML: {error}")]
    if root is None or data is None:
        return []  # an empty file: every default applies
    if not isinstance(data, dict):
        return [
            Problem(
                name,
                root.start_mark.line + 1,
                "",
                "expected a mapping of sections (service:, zendesk:, jira:, slack:)",
            )
        ]
    problems = _duplicate_keys(root, name)
    for key, value in data.items():
        model = SECTIONS.get(str(key))
        found = _child(root, str(key))
        line = found[0] if found is not None else None
        if model is None:
            expected = ", ".join(SECTIONS)
            problems.append(
                Problem(name, line, str(key), f"unknown section; expected one of {expected}")
            )
            continue
        if value is not None and not isinstance(value, dict):
            problems.append(
                Problem(name, line, str(key), f"got {value!r}; expected a mapping of settings")
            )
            continue
        try:
            model.model_validate(value or {})
        except ValidationError as error:
            problems.extend(_problems(error, root, name, schema=model, prefix=(str(key),)))
    if not problems:
        problems.extend(_policy_names(data, root, name))
    return sorted(problems, key=lambda p: (p.line or 0, p.field, p.message))


def _policy_names(data: dict[str, Any], root: yaml.Node, name: str) -> list[Problem]:
    """Each helpdesk's ``policy`` must name a policy ``service.policies`` loads (the bundled
    three by default), as ``slabot run`` requires; paths are read from the working
    directory, as ``slabot run`` reads them."""
    files = list((data.get("service") or {}).get("policies") or [])
    problems: list[Problem] = []
    names: set[str] = set()
    for file in files or [str(p) for p in bundled_policy_paths()]:
        try:
            names.add(load_policy(file).name)
        except PolicyFileError as error:
            line = _line(root, "service", "policies") if files else None
            first = error.problems[0] if error.problems else ""
            problems.append(Problem(name, line, "service.policies", f"{file}: {first}"))
    if "routing" in data and names:
        from slabot.routing_files import routing_problems

        problems.extend(routing_problems(data["routing"], root, name, names)[1])
    for section in ("zendesk", "jira"):
        if "routing" not in data and section in data and not (data[section] or {}).get("policy"):
            problems.append(
                Problem(
                    name,
                    _line(root, section),
                    f"{section}.policy",
                    "required and missing: name the policy this helpdesk's tickets are "
                    "evaluated under, or add a routing: section that decides it per ticket",
                )
            )
        policy = (data.get(section) or {}).get("policy")
        if policy is not None and names and policy not in names:
            problems.append(
                Problem(
                    name,
                    _line(root, section, "policy"),
                    f"{section}.policy",
                    f"{policy!r} is not among the policies loaded ({', '.join(sorted(names))}); "
                    "add its file to service.policies",
                )
            )
    return problems


def _line(root: yaml.Node, *path: str) -> int | None:
    """The line of the deepest key of ``path`` found in the document."""
    node, line = root, None
    for part in path:
        found = _child(node, part)
        if found is None:
            break
        line, node = found[0], found[1]
    return line
