"""Proof fixtures: the service in this process, one per test module (see service_support)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.proof.service_support import Target, serve_in_process


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    with serve_in_process(tmp_path_factory.mktemp("service")) as served:
        yield served
