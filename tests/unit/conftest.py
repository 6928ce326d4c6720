"""Shared fixtures for the engine's unit tests: the three shipped policy files, loaded once."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bot.compiled import Policy

POLICY_DIR = Path(__file__).resolve().parents[2] / "config" / "policies"
SHIPPED_POLICIES = ("cloudtalk", "zoom", "zmanda")


def load_policy(name: str) -> Policy:
    """A shipped policy file, parsed the plain way (not through slabot's loader)."""
    text = (POLICY_DIR / f"{name}.yaml").read_text(encoding="utf-8")
    return Policy.from_mapping(yaml.safe_load(text))


@pytest.fixture(scope="session")
def policies() -> dict[str, Policy]:
    return {name: load_policy(name) for name in SHIPPED_POLICIES}


@pytest.fixture(scope="session")
def cloudtalk(policies: dict[str, Policy]) -> Policy:
    return policies["cloudtalk"]


@pytest.fixture(scope="session")
def zoom(policies: dict[str, Policy]) -> Policy:
    return policies["zoom"]


@pytest.fixture(scope="session")
def zmanda(policies: dict[str, Policy]) -> Policy:
    return policies["zmanda"]
