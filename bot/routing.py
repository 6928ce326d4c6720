"""Which policy a ticket is evaluated under: ordered routing rules, first match wins (pure).

A deployment running several policies (Zendesk SLA policies and JSM SLA goals are ordered
lists with conditions, too) lists rules in ``routing:`` of config/slabot.yaml. Each rule
names a policy and conditions on the ticket's routing attributes, a plain mapping the
connectors build from the helpdesk's ticket (and ``slabot evaluate`` reads from each JSON
line)::

    source               "zendesk" or "jira"
    brand, form          Zendesk brand and ticket form ids (as text: "360000000002")
    group, organization  Zendesk group and organization names
    tags                 Zendesk tags (a list)
    custom_fields        Zendesk ticket field id -> value
    organization_fields  Zendesk organization field key -> value
    project, issue_type  Jira project key, issue type name (text)
    components, labels   Jira (lists)
    fields               Jira field id -> value (select lists: the option's value)

``RoutingSpec`` validates the YAML (pydantic); ``Router`` compiles it once into plain
predicates (a field getter per condition, frozensets for list membership, short-circuit
``all``/``any``) so that routing a ticket costs a few dictionary look-ups. ``explain``
walks the same rules slowly, saying why each earlier rule did not match.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bot.errors import PolicyError
from bot.ticket import ROUTING_ATTRIBUTES

SOURCES = ("zendesk", "jira")
NAME_ATTRIBUTES = ("brand", "group", "organization", "form", "project", "issue_type")
"""Single names or ids, compared as text exactly as the helpdesk spells them."""
LIST_ATTRIBUTES = ("tags", "components", "labels")
"""Lists, matched when the ticket carries any of the values, exactly as spelled."""
FIELD_ATTRIBUTES = {
    "custom_field": "custom_fields",
    "organization_field": "organization_fields",
    "field": "fields",
}
"""Condition key -> the attribute holding the mapping of fields it reads."""
ATTRIBUTES = ROUTING_ATTRIBUTES
"""Every routing attribute a ticket may carry (what ``slabot evaluate`` accepts on a line)."""

Attributes = Mapping[str, Any]
Predicate = Callable[[Attributes], bool]


def _listed(value: Any) -> Any:
    """One value or a list of them: ``brand: Zoom`` is ``brand: [Zoom]``."""
    if isinstance(value, str | int):
        return [value]
    return value


Values = Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldCondition(_Model):
    """A custom, organization or Jira field holds one of ``equals`` (or, with ``present``,
    holds anything at all / nothing)."""

    id: str | None = None
    """The field's id: a Zendesk ticket field's number, a Jira ``customfield_NNNNN``."""
    key: str | None = None
    """An organization field's key (``organization_field`` only)."""
    equals: Values | None = None
    """The values that match (one or a list; compared as text, exactly)."""
    present: bool | None = None
    """true: the field holds any value; false: it is empty or absent."""

    @field_validator("id", mode="before")
    @classmethod
    def _id_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("equals", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        listed = _listed(value)
        if isinstance(listed, list):
            return [str(item) if isinstance(item, int | float) else item for item in listed]
        return listed

    @model_validator(mode="after")
    def _one_test(self) -> FieldCondition:
        if (self.id is None) == (self.key is None):
            raise ValueError("give the field's id (or, for organization_field, its key)")
        if (self.equals is None) == (self.present is None):
            raise ValueError("give either equals: (the values that match) or present: true/false")
        return self

    @property
    def name(self) -> str:
        return self.id if self.id is not None else str(self.key)


class Condition(_Model):
    """Conditions on a ticket's routing attributes; every key given must hold (and)."""

    all: list[Condition] | None = None
    """Every condition listed holds."""
    any: list[Condition] | None = None
    """At least one condition listed holds."""
    source: Literal["zendesk", "jira"] | None = None
    """The helpdesk the ticket comes from."""
    brand: Values | None = None
    """Zendesk brand ids, the ticket's ``brand_id`` (one or a list)."""
    group: Values | None = None
    """Zendesk group names."""
    organization: Values | None = None
    """Zendesk organization names."""
    form: Values | None = None
    """Zendesk ticket form ids, the ticket's ``ticket_form_id``."""
    tags: Values | None = None
    """Zendesk tags: the ticket carries at least one of them."""
    custom_field: FieldCondition | None = None
    """A Zendesk ticket field, by id."""
    organization_field: FieldCondition | None = None
    """A Zendesk organization field, by key."""
    project: Values | None = None
    """Jira project keys."""
    issue_type: Values | None = None
    """Jira issue type names."""
    components: Values | None = None
    """Jira components: the issue has at least one of them."""
    labels: Values | None = None
    """Jira labels: the issue carries at least one of them."""
    field: FieldCondition | None = None
    """Any Jira field, by id (``customfield_10050``, ``priority``...)."""

    @field_validator(*NAME_ATTRIBUTES, *LIST_ATTRIBUTES, mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        listed = _listed(value)
        if isinstance(listed, list):
            return [str(item) if isinstance(item, int) else item for item in listed]
        return listed

    @model_validator(mode="after")
    def _not_empty(self) -> Condition:
        if not self.model_fields_set:
            raise ValueError(
                "an empty condition; name at least one of source, brand, group, organization, "
                "form, tags, custom_field, organization_field, project, issue_type, components, "
                "labels, field, all, any"
            )
        for name in ("all", "any"):
            listed = getattr(self, name)
            if listed is not None and not listed:
                raise ValueError(f"{name}: lists no condition; give at least one")
        return self


class RoutingRule(_Model):
    """One rule: tickets matching ``when`` are evaluated under ``policy``."""

    name: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    """What the audit and ``slabot routes explain`` call the rule (default: ``rule N``)."""
    policy: Annotated[str, Field(pattern=r"^[a-z0-9_-]+$")]
    """The name of the policy (its ``name:``), which must be among those loaded."""
    when: Condition | None = None
    """The conditions; the final default rule has none."""
    default: bool = False
    """true on the last rule, which every ticket matching no other rule falls to."""

    @model_validator(mode="after")
    def _default_has_no_conditions(self) -> RoutingRule:
        if self.default and self.when is not None:
            raise ValueError("when: a default rule has no conditions; remove when:")
        if not self.default and self.when is None:
            raise ValueError(
                "when: required: give this rule's conditions, or make it the final "
                "default (default: true)"
            )
        return self


class RoutingSpec(_Model):
    """The ``routing:`` section: the rules, first match wins, ending with the default."""

    rules: Annotated[list[RoutingRule], Field(min_length=1)]
    """The rules in order; the last is ``{policy: NAME, default: true}``."""

    @model_validator(mode="after")
    def _final_default(self) -> RoutingSpec:
        last = len(self.rules) - 1
        for index, rule in enumerate(self.rules):
            if rule.default and index != last:
                raise ValueError(
                    f"rules.{index}.default: only the last rule may be the default; the rules "
                    "after it would never match"
                )
        if not self.rules[last].default:
            raise ValueError(
                f"rules.{last}: the last rule must be the default: add a final rule "
                "'- {policy: NAME, default: true}' so that every ticket gets a policy"
            )
        seen: dict[str, int] = {}
        for index, rule in enumerate(self.rules):
            name = rule_name(rule, index)
            if name in seen:
                raise ValueError(
                    f"rules.{index}.name: {name!r} is the name of rule {seen[name] + 1} too; "
                    "names tell rules apart in the audit"
                )
            seen[name] = index
        return self


def rule_name(rule: RoutingRule, index: int) -> str:
    """The rule's name, or ``rule N`` (1-based) when it has none."""
    return rule.name or ("default" if rule.default else f"rule {index + 1}")


@dataclass(frozen=True, slots=True)
class Route:
    """The outcome of routing: the policy's name and the rule that chose it."""

    policy: str
    rule: str
    index: int
    """The rule's position (0-based)."""


@dataclass(frozen=True, slots=True)
class RuleVerdict:
    """One rule as ``explain`` judged it."""

    rule: str
    policy: str
    matched: bool
    reasons: tuple[str, ...]
    """Why it matched or did not (one line per condition looked at)."""


class RoutingError(PolicyError):
    """The routing rules name a policy that is not loaded."""


class Router:
    """Compiled routing rules: ``route(attributes)`` is the policy a ticket falls under.

    >>> spec = RoutingSpec.model_validate({"rules": [
    ...     {"name": "zmanda", "policy": "zmanda", "when": {"brand": "Zmanda"}},
    ...     {"policy": "zoom", "default": True}]})
    >>> router = Router(spec)
    >>> router.route({"source": "zendesk", "brand": "Zmanda"}).policy
    'zmanda'
    >>> router.route({"source": "zendesk", "brand": "Zoom"}).rule
    'default'
    """

    def __init__(self, spec: RoutingSpec, known_policies: Iterable[str] | None = None) -> None:
        self.spec = spec
        if known_policies is not None:
            known = set(known_policies)
            for index, rule in enumerate(spec.rules):
                if rule.policy not in known:
                    raise RoutingError(
                        f"routing rule {rule_name(rule, index)!r} names policy {rule.policy!r}, "
                        f"which is not loaded ({', '.join(sorted(known))})"
                    )
        self.policies = tuple(dict.fromkeys(rule.policy for rule in spec.rules))
        last = len(spec.rules) - 1
        self.default = Route(spec.rules[last].policy, rule_name(spec.rules[last], last), last)
        # Most rules start with the source: index them by it, so that a Zendesk ticket never
        # looks at a Jira rule. Each source's list keeps the rules' order: the rules for that
        # source and those for any source, interleaved as written.
        compiled: list[tuple[str | None, Condition | None, Route]] = []
        for index, rule in enumerate(spec.rules[:-1]):
            assert rule.when is not None  # the schema guarantees it
            source, rest = _split_source(rule.when)
            compiled.append((source, rest, Route(rule.policy, rule_name(rule, index), index)))
        # The checked form: one closure per condition, values of any shape taken safely.
        self._by_source: dict[str | None, tuple[tuple[Predicate | None, Route], ...]] = {
            name: tuple(
                (_compile(rest) if rest is not None else None, found)
                for source, rest, found in compiled
                if source is None or source == name
            )
            for name in SOURCES
        }
        self._any_source = tuple(
            (_compile(rest) if rest is not None else None, found)
            for source, rest, found in compiled
            if source is None
        )
        # The fast form: per source, one generated function testing the rules in order
        # inline (no call per condition); it falls back to the checked form on a value of
        # the wrong shape (a list where a name belongs raises TypeError in a set look-up).
        self._fast: dict[str | None, Callable[[Attributes], Route]] = {
            name: _generate(
                [
                    (rest, found)
                    for source, rest, found in compiled
                    if source is None or source == name
                ],
                self.default,
            )
            for name in SOURCES
        }
        self._fast_any = _generate(
            [(rest, found) for source, rest, found in compiled if source is None], self.default
        )

    def route(self, attributes: Attributes) -> Route:
        """The first rule ``attributes`` match, else the default."""
        try:
            return self._fast.get(attributes.get("source"), self._fast_any)(attributes)
        except TypeError:  # an unhashable value where text belongs (source, brand...)
            return self.route_checked(attributes)

    def route_checked(self, attributes: Attributes) -> Route:
        """``route`` through the per-condition closures (what the generated code falls back
        on; the tests compare the two)."""
        source = attributes.get("source")
        rules = (
            self._by_source.get(source, self._any_source)
            if isinstance(source, str)
            else self._any_source
        )
        for matches, found in rules:
            if matches is None or matches(attributes):
                return found
        return self.default

    def explain(self, attributes: Attributes) -> list[RuleVerdict]:
        """Each rule up to the one that matches, with why it did or did not."""
        verdicts: list[RuleVerdict] = []
        for index, rule in enumerate(self.spec.rules):
            name = rule_name(rule, index)
            if rule.when is None:
                reason = "the default: every ticket no earlier rule matched"
                verdicts.append(RuleVerdict(name, rule.policy, True, (reason,)))
                break
            matched, reasons = _why(rule.when, attributes)
            verdicts.append(RuleVerdict(name, rule.policy, matched, tuple(reasons)))
            if matched:
                break
        return verdicts


# Compiling: each condition becomes a closure over what it needs, looked up once.


def _split_source(condition: Condition) -> tuple[str | None, Condition | None]:
    """The source a rule requires at its top level, and the rest of its conditions (None:
    nothing else to test)."""
    if condition.source is None:
        return None, condition
    rest = condition.model_fields_set - {"source"}
    if not rest:
        return condition.source, None
    return condition.source, Condition.model_validate(
        {key: getattr(condition, key) for key in rest}
    )


def _compile(condition: Condition) -> Predicate:
    parts: list[Predicate] = []
    for key in condition.model_fields_set:
        value = getattr(condition, key)
        if value is None:
            continue
        parts.append(_compile_key(key, value))
    # Cheap tests first, so that a rule that cannot match is left after one look-up.
    parts.sort(key=_cost)
    return _all(parts)


def _cost(predicate: Predicate) -> int:
    return getattr(predicate, "cost", 1)


def _with_cost(predicate: Predicate, cost: int) -> Predicate:
    predicate.cost = cost  # type: ignore[attr-defined]
    return predicate


def _all(parts: list[Predicate]) -> Predicate:
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        first, second = parts

        def both(attributes: Attributes) -> bool:
            return first(attributes) and second(attributes)

        return _with_cost(both, max(_cost(first), _cost(second)))
    tuple_parts = tuple(parts)

    def every(attributes: Attributes) -> bool:
        # A plain loop: all() over a generator costs a frame per ticket on the hot path.
        for part in tuple_parts:  # noqa: SIM110
            if not part(attributes):
                return False
        return True

    return _with_cost(every, max(_cost(p) for p in parts))


def _any(parts: list[Predicate]) -> Predicate:
    if len(parts) == 1:
        return parts[0]
    tuple_parts = tuple(sorted(parts, key=_cost))

    def some(attributes: Attributes) -> bool:
        for part in tuple_parts:  # noqa: SIM110 (as in _all)
            if part(attributes):
                return True
        return False

    return _with_cost(some, max(_cost(p) for p in parts))


def _compile_key(key: str, value: Any) -> Predicate:
    if key == "all":
        return _all(sorted((_compile(c) for c in value), key=_cost))
    if key == "any":
        return _any([_compile(c) for c in value])
    if key == "source":
        wanted_source: str = value

        def source_is(attributes: Attributes) -> bool:
            return attributes.get("source") == wanted_source

        return _with_cost(source_is, 0)
    if key in NAME_ATTRIBUTES:
        names = frozenset(value)

        def name_in(attributes: Attributes, key: str = key) -> bool:
            try:
                return attributes.get(key) in names
            except TypeError:  # a list or mapping where a name belongs: not a match
                return False

        return _with_cost(name_in, 1)
    if key in LIST_ATTRIBUTES:
        members = frozenset(value)

        def carries(attributes: Attributes, key: str = key) -> bool:
            found = attributes.get(key)
            if not found:
                return False
            if isinstance(found, str):
                return found in members
            return not members.isdisjoint(found)

        return _with_cost(carries, 2)
    if key in FIELD_ATTRIBUTES:
        return _compile_field(FIELD_ATTRIBUTES[key], value)
    raise AssertionError(f"no compiler for condition {key!r}")  # the schema lists every key


def _compile_field(holder: str, condition: FieldCondition) -> Predicate:
    field_name = condition.name
    if condition.present is not None:
        wanted_present = condition.present

        def present(attributes: Attributes) -> bool:
            fields = attributes.get(holder)
            return _filled(fields.get(field_name) if fields else None) is wanted_present

        return _with_cost(present, 2)
    assert condition.equals is not None
    values = frozenset(condition.equals)

    def equals(attributes: Attributes) -> bool:
        fields = attributes.get(holder)
        if not fields:
            return False
        found = fields.get(field_name)
        if found is None:
            return False
        if isinstance(found, str):
            return found in values
        if isinstance(found, list | tuple):  # a multi-select: any option
            return any(str(item) in values for item in found)
        return str(found) in values

    return _with_cost(equals, 2)


def _filled(value: Any) -> bool:
    return value is not None and value != "" and value != [] and value is not False


# Generating: the rules of one source as one function of inline tests.


class _Generator:
    """Turns conditions into Python expressions over ``g = attributes.get``; the values
    they compare with are frozensets bound in the function's namespace, never text in the
    code (so nothing from the config file is ever executed)."""

    def __init__(self) -> None:
        self.namespace: dict[str, Any] = {}
        self._names = 0

    def bind(self, value: Any) -> str:
        name = f"_c{self._names}"
        self._names += 1
        self.namespace[name] = value
        return name

    def expression(self, condition: Condition) -> str:
        parts: list[tuple[int, str]] = []
        for key in condition.model_fields_set:
            value = getattr(condition, key)
            if value is not None:
                parts.append(self._key(key, value))
        parts.sort(key=lambda part: part[0])
        return "(" + " and ".join(text for _, text in parts) + ")"

    def _key(self, key: str, value: Any) -> tuple[int, str]:
        if key == "all":
            return 3, "(" + " and ".join(self.expression(c) for c in value) + ")"
        if key == "any":
            return 3, "(" + " or ".join(self.expression(c) for c in value) + ")"
        if key == "source":
            return 0, f"(g('source') == {self.bind(value)})"
        if key in NAME_ATTRIBUTES:
            return 1, f"(g({key!r}) in {self.bind(frozenset(value))})"
        if key in LIST_ATTRIBUTES:
            members = self.bind(frozenset(value))
            found = self.bind(None).replace("_c", "_v")
            return 2, (
                f"(({found} := g({key!r})) and ({found} in {members} if {found}.__class__ "
                f"is str else not {members}.isdisjoint({found})))"
            )
        predicate = self.bind(_compile_field(FIELD_ATTRIBUTES[key], value))
        return 2, f"{predicate}(a)"


def _generate(
    rules: list[tuple[Condition | None, Route]], default: Route
) -> Callable[[Attributes], Route]:
    generator = _Generator()
    lines = ["def route(a):", "    g = a.get"]
    for rest, found in rules:
        route = generator.bind(found)
        if rest is None:
            lines.append(f"    return {route}")
            break
        lines.append(f"    if {generator.expression(rest)}:")
        lines.append(f"        return {route}")
    else:
        lines.append(f"    return {generator.bind(default)}")
    namespace = dict(generator.namespace)
    exec(compile("\n".join(lines), "<routing rules>", "exec"), namespace)
    generated: Callable[[Attributes], Route] = namespace["route"]
    return generated


# Explaining: the same conditions, slowly, with a reason for each.


def _why(condition: Condition, attributes: Attributes) -> tuple[bool, list[str]]:
    reasons: list[str] = []
    keys = [key for key in Condition.model_fields if key not in ("all", "any")]
    for key in (*keys, "all", "any"):
        if key not in condition.model_fields_set:
            continue
        value = getattr(condition, key)
        if value is None:
            continue
        matched, reason = _why_key(key, value, attributes)
        reasons.append(reason)
        if not matched:
            return False, reasons
    return True, reasons


def _why_key(key: str, value: Any, attributes: Attributes) -> tuple[bool, str]:
    if key in ("all", "any"):
        results = [_why(c, attributes) for c in value]
        inner = "; ".join(" and ".join(r) for _, r in results)
        if key == "all":
            matched = all(m for m, _ in results)
            return matched, f"all of ({inner}): {'yes' if matched else 'no'}"
        matched = any(m for m, _ in results)
        return matched, f"any of ({inner}): {'yes' if matched else 'no'}"
    if key == "source":
        found = attributes.get("source")
        differs = "" if found == value else f", not {value!r}"
        return found == value, f"source is {found!r}{differs}"
    if key in NAME_ATTRIBUTES:
        found = attributes.get(key)
        matched = isinstance(found, str) and found in value
        shown = " or ".join(repr(v) for v in value)
        if found is None:
            return False, f"{key} is not given (wanted {shown})"
        return matched, f"{key} is {found!r}" + ("" if matched else f", not {shown}")
    if key in LIST_ATTRIBUTES:
        found_list = attributes.get(key) or []
        if isinstance(found_list, str):
            found_list = [found_list]
        common = sorted(set(value) & set(found_list))
        shown = ", ".join(value)
        if common:
            return True, f"{key} include {', '.join(common)}"
        return False, f"{key} include none of {shown}" + (
            f" (has {', '.join(sorted(map(str, found_list)))})" if found_list else " (has none)"
        )
    holder = FIELD_ATTRIBUTES[key]
    condition: FieldCondition = value
    fields = attributes.get(holder) or {}
    found_value = fields.get(condition.name) if isinstance(fields, Mapping) else None
    label = f"{key} {condition.name}"
    if condition.present is not None:
        matched = _filled(found_value) is condition.present
        state = "holds a value" if _filled(found_value) else "is empty"
        return matched, f"{label} {state}"
    assert condition.equals is not None
    matched = _compile_field("f", condition)({"f": {condition.name: found_value}})
    shown = " or ".join(repr(v) for v in condition.equals)
    if found_value is None:
        return False, f"{label} is not given (wanted {shown})"
    return matched, f"{label} is {found_value!r}" + ("" if matched else f", not {shown}")
