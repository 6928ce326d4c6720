"""Every request slabot sent the fake Jira, checked against Atlassian's published OpenAPI.

``tests/fixtures/real/openapi/jira-platform-v3.subset.json`` holds the operations slabot
calls, verbatim from Atlassian's Jira Cloud platform REST API description (see
tests/fixtures/real/SOURCES.md). ``openapi-core`` validates each recorded call: the method
and path template exist, the path and query parameters have their types and required
values, and the JSON body's fields have their names and types. python-jira sends most calls
to ``/rest/api/2``; version 2 and version 3 have the same operations (version 3 adds the
Atlassian Document Format to comment bodies and text fields), so a version 2 call is
checked against its version 3 operation, a comment's plain-text ``body`` excepted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import requests
from openapi_core import OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest
from openapi_core.validation.request.exceptions import RequestValidationError

from slabot.demo.environment import DemoSystems
from slabot.fakes.jira import Call

SPEC = Path(__file__).parent / "fixtures" / "real" / "openapi" / "jira-platform-v3.subset.json"
SITE = "https://your-domain.atlassian.net"
"""The server the description names (the checked path is what matters)."""


@cache
def jira_description() -> OpenAPI:
    return OpenAPI.from_dict(json.loads(SPEC.read_text(encoding="utf-8")))


def jira_problems(calls: Iterable[Call]) -> list[str]:
    """What is wrong with each call, against the published description (empty: all conform)."""
    problems = []
    for call in calls:
        path = call.path.replace("/rest/api/2/", "/rest/api/3/", 1)
        body = call.body
        if (
            call.path.startswith("/rest/api/2/")
            and isinstance(body, dict)
            and isinstance(body.get("body"), str)
        ):
            # Version 2 takes a comment's text as a string where version 3 takes a document.
            body = {**body, "body": {"type": "doc", "version": 1, "content": []}}
        query = urlencode([(k, v) for k, values in call.query.items() for v in values])
        request = requests.Request(
            call.method,
            f"{SITE}{path}" + (f"?{query}" if query else ""),
            headers={"Authorization": "Basic c2xhYm90OnRva2Vu", "Content-Type": "application/json"},
            data=json.dumps(body).encode() if body is not None else None,
        ).prepare()
        try:
            jira_description().validate_request(RequestsOpenAPIRequest(request))
        except RequestValidationError as error:
            problems.append(f"{call.method} {call.path}: {_explain(error)}")
        except Exception as error:  # path or method not in the description
            problems.append(f"{call.method} {call.path}: {type(error).__name__}: {error}")
    return problems


def _explain(error: Any) -> str:
    cause = error.__cause__
    details = [str(error)]
    for inner in getattr(cause, "schema_errors", None) or ():
        details.append(f"{list(inner.path)}: {inner.message}")
    if cause is not None and not getattr(cause, "schema_errors", None):
        details.append(str(cause))
    return "; ".join(details)


def assert_conforming(systems: DemoSystems) -> None:
    """Fail unless every request the fake Jira received conforms to Atlassian's description and
    the fake Slack saw no invalid call (an unknown method, a missing argument, Block Kit past
    its limits). The fixtures that start the fake systems call it when a test ends."""
    problems = jira_problems(systems.jira.calls)
    assert not problems, "requests Jira Cloud would refuse:\n" + "\n".join(problems)
    assert systems.slack.problems == [], "\n".join(systems.slack.problems)
