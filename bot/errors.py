"""The exceptions slabot raises, each with a message a support engineer can act on."""


class SlabotError(Exception):
    """Base of every error slabot raises on purpose."""


class CalendarError(SlabotError):
    """A calendar cannot answer: no opening hours, or an input far outside any sane range."""


class PolicyError(SlabotError):
    """A policy is invalid or does not define what a ticket needs."""


class TicketError(SlabotError):
    """A ticket's fields are missing, malformed or unknown to the policy."""


class ReclassificationError(SlabotError):
    """An agent's reclassification breaks a policy rule (for example P1 outside production)."""
