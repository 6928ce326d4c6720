"""The fake Slack ships with slabot (``slabot demo`` serves it); the tests import it here."""

from slabot.demo.fakes.slack import Call, FakeSlack, Fault, reference_methods

__all__ = ["Call", "FakeSlack", "Fault", "reference_methods"]
