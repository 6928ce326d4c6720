"""The fake Zendesk ships with slabot (``slabot demo`` serves it); the tests import it here."""

from slabot.demo.fakes.zendesk import PRIORITIES, STATUSES, Call, FakeZendesk, Fault, iso

__all__ = ["PRIORITIES", "STATUSES", "Call", "FakeZendesk", "Fault", "iso"]
