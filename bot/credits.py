"""Service credits: the rules a plan with commitment ``sla`` sets, and what a month owes.

Pure: the store hands in one organization's clocks of one month (``CreditClock``), this
module says which breaches and which attainment shortfalls earn a credit, as a percentage of
the organization's monthly fee, capped per month. No I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Target = Literal["first_response", "restoration", "next_update"]
Percent = Annotated[Decimal, Field(gt=0, le=100)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PerBreachCredit(_Model):
    """A credit for every breached clock of one target (and, optionally, one priority)."""

    target: Target
    """The clock whose breaches earn the credit (``restoration``)."""
    priority: str | None = None
    """Only breaches of tickets at this (final) priority; null: every priority."""
    percent: Percent
    """Percent of the monthly fee per breach (``5`` for 5%)."""


class AttainmentTier(_Model):
    """A credit when a month's attainment of one target falls below a threshold."""

    target: Target
    """The clock whose attainment is judged."""
    priority: str | None = None
    """Only clocks of tickets at this (final) priority; null: every priority."""
    below: Annotated[Decimal, Field(gt=0, le=100)]
    """Attainment in percent under which the tier applies (``99.5``)."""
    percent: Percent
    """Percent of the monthly fee owed. Of the tiers of one target and priority that apply,
    only the one with the lowest threshold (the worst) counts."""


class CreditRules(_Model):
    """A plan's service credits (only on a plan with commitment ``sla``)."""

    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    """ISO 4217 code of the fees and credits (``EUR``)."""
    monthly_fee: Annotated[Decimal, Field(ge=0)]
    """The monthly fee of an organization on this plan that ``fees`` does not name."""
    fees: dict[str, Annotated[Decimal, Field(ge=0)]] = Field(default_factory=dict)
    """Organization name (as the helpdesk shows it) -> its monthly fee."""
    cap_percent: Percent = Decimal(100)
    """The most a month can owe, in percent of the monthly fee."""
    per_breach: tuple[PerBreachCredit, ...] = ()
    """Credits per breached clock."""
    attainment: tuple[AttainmentTier, ...] = ()
    """Credits by monthly attainment below thresholds."""

    @model_validator(mode="after")
    def _some_rule(self) -> CreditRules:
        if not self.per_breach and not self.attainment:
            raise ValueError(
                "credits: give at least one rule under per_breach or attainment, or remove "
                "the credits section"
            )
        return self

    def priorities(self) -> set[str]:
        """Every priority the rules name (checked against the policy's levels)."""
        named = [rule.priority for rule in self.per_breach]
        named += [tier.priority for tier in self.attainment]
        return {name for name in named if name is not None}

    def fee(self, organization: str | None) -> Decimal:
        """The organization's monthly fee."""
        if organization is not None and organization in self.fees:
            return self.fees[organization]
        return self.monthly_fee


@dataclass(frozen=True, slots=True)
class CreditClock:
    """One clock of the month, as the evidence an account manager sends shows it."""

    ticket: str
    """How people name the ticket: ``zendesk:123``."""
    target: str
    priority: str
    started_at: datetime
    due: datetime | None
    stopped_at: datetime | None
    """When the clock stopped (reply, solve); None while it runs."""
    breached: bool
    """Stopped after due, or still running past due."""
    paused_seconds: int

    @property
    def breached_at(self) -> datetime | None:
        """When the breach happened: the due instant (None for a clock met or running)."""
        return self.due if self.breached else None


@dataclass(frozen=True, slots=True)
class CreditLine:
    """One reason for a credit: a rule and the clocks that triggered it."""

    rule: str
    """The rule as a person reads it: ``5% per breached P1 restoration``."""
    percent: Decimal
    evidence: tuple[CreditClock, ...]
    attainment: Decimal | None = None
    """For an attainment tier: the month's attainment it judged, in percent."""


@dataclass(frozen=True, slots=True)
class CreditStatement:
    """What one organization on one plan is owed for one month."""

    organization: str | None
    plan: str
    currency: str
    monthly_fee: Decimal
    lines: tuple[CreditLine, ...]
    percent_before_cap: Decimal
    percent: Decimal
    """Capped at ``cap_percent``."""
    amount: Decimal
    """``monthly_fee * percent / 100``, to the cent (half up)."""


def attainment_percent(met: int, breached: int) -> Decimal | None:
    """Met over judged clocks, in percent with two decimals; None when none was judged.

    >>> attainment_percent(199, 1)
    Decimal('99.50')
    """
    judged = met + breached
    if judged == 0:
        return None
    return (Decimal(100) * met / judged).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def credit_statement(
    rules: CreditRules, plan: str, organization: str | None, clocks: Sequence[CreditClock]
) -> CreditStatement:
    """Credits owed for one organization's month of ``clocks`` on ``plan``.

    A clock still running and not yet due is neither met nor breached: it is left out of the
    attainment and earns nothing (yet).

    >>> from datetime import UTC
    >>> rules = CreditRules(currency="EUR", monthly_fee=Decimal(1000),
    ...     per_breach=[PerBreachCredit(target="restoration", priority="P1", percent=5)])
    >>> at = datetime(2026, 11, 2, 9, tzinfo=UTC)
    >>> late = CreditClock("zendesk:1", "restoration", "P1", at, at, at, True, 0)
    >>> credit_statement(rules, "premier_plus", "Acme", [late]).amount
    Decimal('50.00')
    """
    lines: list[CreditLine] = []
    for rule in rules.per_breach:
        hits = tuple(
            clock
            for clock in clocks
            if clock.breached
            and clock.target == rule.target
            and (rule.priority is None or clock.priority == rule.priority)
        )
        if hits:
            lines.append(CreditLine(_per_breach_text(rule), rule.percent * len(hits), hits))
    groups: dict[tuple[str, str | None], list[AttainmentTier]] = {}
    for tier in rules.attainment:
        groups.setdefault((tier.target, tier.priority), []).append(tier)
    for (target, priority), tiers in groups.items():
        judged = [
            clock
            for clock in clocks
            if clock.target == target
            and (priority is None or clock.priority == priority)
            and (clock.breached or clock.stopped_at is not None)
        ]
        breached = tuple(clock for clock in judged if clock.breached)
        attained = attainment_percent(len(judged) - len(breached), len(breached))
        if attained is None:
            continue
        applying = [tier for tier in tiers if attained < tier.below]
        if applying:
            worst = min(applying, key=lambda tier: tier.below)
            lines.append(CreditLine(_tier_text(worst), worst.percent, breached, attained))
    before_cap = sum((line.percent for line in lines), Decimal(0))
    percent = min(before_cap, rules.cap_percent)
    fee = rules.fee(organization)
    amount = (fee * percent / 100).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return CreditStatement(
        organization, plan, rules.currency, fee, tuple(lines), before_cap, percent, amount
    )


def _scope(target: str, priority: str | None) -> str:
    name = target.replace("_", " ")
    return f"{priority} {name}" if priority else name


def _per_breach_text(rule: PerBreachCredit) -> str:
    return f"{rule.percent}% per breached {_scope(rule.target, rule.priority)}"


def _tier_text(tier: AttainmentTier) -> str:
    return (
        f"{tier.percent}% for {_scope(tier.target, tier.priority)} attainment below {tier.below}%"
    )
