"""bot.records.quick_init: the same constructor as the dataclass's, storing through the slots."""

from __future__ import annotations

import dataclasses
import doctest
from dataclasses import FrozenInstanceError, dataclass

import pytest

import bot.records
from bot.engine import Decision, TargetDecision
from bot.records import quick_init
from bot.ticket import Ticket


@quick_init
@dataclass(frozen=True, slots=True)
class Span:
    begin: int
    end: int | None = None
    checked: bool = False

    def __post_init__(self) -> None:
        if self.end is not None and self.end < self.begin:
            raise ValueError("ends before it begins")


def test_positional_keyword_and_default_arguments_build_the_same_record() -> None:
    assert Span(1, 2) == Span(begin=1, end=2) == Span(1, end=2, checked=False)
    assert Span(1).end is None
    assert repr(Span(1, 2, True)) == "Span(begin=1, end=2, checked=True)"


def test_the_record_stays_frozen_and_replace_goes_through_the_checks() -> None:
    span = Span(1, 2)
    with pytest.raises(FrozenInstanceError):
        span.end = 3  # type: ignore[misc]
    assert dataclasses.replace(span, end=5) == Span(1, 5)
    with pytest.raises(ValueError, match="ends before"):
        dataclasses.replace(span, end=0)


def test_missing_and_unknown_arguments_are_refused_as_by_the_generated_init() -> None:
    with pytest.raises(TypeError):
        Span()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Span(1, middle=2)  # type: ignore[call-arg]


def test_a_class_that_is_not_a_frozen_slotted_dataclass_is_refused() -> None:
    @dataclass(slots=True)
    class Loose:
        value: int

    @dataclass(frozen=True)
    class NoSlots:
        value: int

    @dataclass(frozen=True, slots=True)
    class Factory:
        values: list[int] = dataclasses.field(default_factory=list)

    @dataclass(frozen=True, slots=True)
    class WithInitVar:
        value: int
        scale: dataclasses.InitVar[int] = 1

        def __post_init__(self, scale: int) -> None:
            pass

    for cls in (Loose, NoSlots, Factory, WithInitVar):
        with pytest.raises(TypeError, match="quick_init"):
            quick_init(cls)


@pytest.mark.parametrize("cls", [Ticket, Decision, TargetDecision])
def test_the_cores_records_keep_their_fields_and_defaults(cls: type) -> None:
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    required = [name for name, default in defaults.items() if default is dataclasses.MISSING]
    assert cls.__init__.__qualname__ == f"{cls.__qualname__}.__init__"
    assert cls.__init__.__code__.co_varnames[1 : len(defaults) + 1] == tuple(defaults)
    assert cls.__init__.__defaults__ == tuple(
        default for default in defaults.values() if default is not dataclasses.MISSING
    )
    assert len(required) == cls.__init__.__code__.co_argcount - 1 - len(cls.__init__.__defaults__)


def test_the_module_example_holds() -> None:
    assert doctest.testmod(bot.records).failed == 0
