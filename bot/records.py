"""Quicker constructors for the core's frozen, slotted dataclasses (same signature, same checks).

A frozen dataclass's generated ``__init__`` stores each field with
``object.__setattr__``, looked up again for every field of every instance: a third of
what evaluating a ticket costs goes into building its ``Ticket``, its ``Decision`` and a
``TargetDecision`` per metric. ``quick_init`` gives such a class an ``__init__`` with the
same parameters and defaults that stores each field through its slot directly, then calls
``__post_init__`` as the generated one does. Instances stay frozen: assigning an attribute
afterwards still raises ``FrozenInstanceError``.

>>> from dataclasses import dataclass
>>> @quick_init
... @dataclass(frozen=True, slots=True)
... class Span:
...     begin: int
...     end: int | None = None
>>> Span(1), Span(1, end=2) == Span(begin=1, end=2)
(Span(begin=1, end=None), True)
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, TypeVar

T = TypeVar("T")


def quick_init(cls: type[T]) -> type[T]:
    """``cls`` with an ``__init__`` that sets its slots directly; ``cls`` must be a frozen
    dataclass with ``slots=True`` whose fields are all ``init`` fields with plain defaults
    (no ``default_factory``), as the core's records are."""
    params = dataclasses.fields(cls)  # type: ignore[arg-type]
    settings = cls.__dict__.get("__dataclass_params__")
    if settings is None or not settings.frozen or "__slots__" not in cls.__dict__:
        raise TypeError(f"quick_init: {cls.__name__} must be a frozen dataclass with slots")
    generated = inspect.signature(cls.__init__).parameters
    if list(generated)[1:] != [param.name for param in params]:
        # An InitVar is a parameter of the generated __init__ but not a field.
        raise TypeError(
            f"quick_init: {cls.__name__}'s __init__ takes more than its fields (an InitVar?)"
        )
    namespace: dict[str, Any] = {}
    signature, body = [], []
    for index, param in enumerate(params):
        if not param.init or param.kw_only or param.default_factory is not dataclasses.MISSING:
            raise TypeError(
                f"quick_init: {cls.__name__}.{param.name} must be a positional init field "
                "without a default_factory"
            )
        setter = f"_set_{index}"
        namespace[setter] = cls.__dict__[param.name].__set__  # the slot's member descriptor
        if param.default is dataclasses.MISSING:
            signature.append(param.name)
        else:
            namespace[f"_default_{index}"] = param.default
            signature.append(f"{param.name}=_default_{index}")
        body.append(f"    {setter}(self, {param.name})")
    if hasattr(cls, "__post_init__"):
        body.append("    self.__post_init__()")
    source = f"def __init__(self, {', '.join(signature)}):\n" + "\n".join(body) + "\n"
    exec(source, namespace)  # as dataclasses itself builds __init__
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__doc__ = cls.__init__.__doc__
    type.__setattr__(cls, "__init__", init)
    return cls
