"""docs/configuration.md is what ``slabot config-docs`` renders from the models, and lists
every field of every model with its type, default and description."""

from __future__ import annotations

import io
from argparse import Namespace
from pathlib import Path

from pydantic import BaseModel

from bot.policy import PolicySpec
from connectors.jira.config import JiraConfig
from connectors.jira.settings import SETTINGS as JIRA_SETTINGS
from connectors.zendesk.config import ZendeskConfig
from connectors.zendesk.settings import SETTINGS as ZENDESK_SETTINGS
from slabot.cli import main
from slabot.config_docs import field_docs, render, run, type_name
from slabot.service.settings import ServiceSettings
from slabot.slack.config import SlackConfig
from slabot.slack.settings import SETTINGS as SLACK_SETTINGS

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "configuration.md"


def test_the_committed_reference_is_up_to_date() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == render(), (
        "docs/configuration.md is out of date: run "
        "`slabot config-docs --output docs/configuration.md` and commit it"
    )


def models_under(root: type[BaseModel]) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = [root]
    for model in found:
        for info in model.model_fields.values():
            type_name(info.annotation, found)
    return found


def test_every_field_of_every_model_is_described_in_a_row() -> None:
    text = render()
    for root in (ServiceSettings, ZendeskConfig, JiraConfig, SlackConfig, PolicySpec):
        for model in models_under(root):
            docs = field_docs(model)
            for name, info in model.model_fields.items():
                key = info.alias or name
                rows = [line for line in text.splitlines() if line.startswith(f"| `{key}` |")]
                assert rows, f"{model.__name__}.{name} has no row"
                assert docs.get(name) or info.description, f"{model.__name__}.{name}: no docstring"
    for variable in (*ZENDESK_SETTINGS, *JIRA_SETTINGS, *SLACK_SETTINGS, "DATABASE_URL"):
        assert f"| `{variable}` |" in text
    for name in ServiceSettings.model_fields:
        assert f"`SLABOT_{name.upper()}`" in text


def test_check_says_when_the_file_is_out_of_date(tmp_path: Path) -> None:
    stale = tmp_path / "configuration.md"
    stale.write_text("# old\n", encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    assert run(Namespace(check=str(stale), output=None), out, err) == 1
    assert "out of date" in err.getvalue() and "--output" in err.getvalue()
    assert main(["config-docs", "--output", str(stale)]) == 0
    assert main(["config-docs", "--check", str(stale)]) == 0
    assert stale.read_text(encoding="utf-8") == render()
