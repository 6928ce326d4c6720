"""Faults injected around one method: the process dying in it, a commit whose answer is lost.

Each wraps ``owner.name`` (through ``monkeypatch``, so the test undoes it) for the first call
only; later calls go through unchanged, as a retry after the fault would.
"""

from __future__ import annotations

from typing import Any

import pytest


class Killed(BaseException):
    """The process dies (a worker child killed at shutdown, OOM): no ``except Exception``
    runs."""


def dies_on_first_call(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> None:
    """The first call raises ``Killed`` before doing anything."""
    real = getattr(owner, name)
    calls = 0

    def dies_once(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise Killed
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, dies_once)


def answer_lost_on_first_call(
    monkeypatch: pytest.MonkeyPatch, owner: object, name: str, error: BaseException
) -> None:
    """The first call does its work, then raises ``error`` as if its answer never came."""
    real = getattr(owner, name)
    calls = 0

    def done_but_unanswered(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        result = real(*args, **kwargs)
        calls += 1
        if calls == 1:
            raise error
        return result

    monkeypatch.setattr(owner, name, done_but_unanswered)
