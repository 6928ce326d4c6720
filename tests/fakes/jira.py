"""The fake Jira ships with slabot (``slabot demo`` serves it); the tests import it here."""

from slabot.demo.fakes.jira import BOT, PRIORITIES, STATUSES, Call, FakeJira, Fault, jira_time

__all__ = ["BOT", "PRIORITIES", "STATUSES", "Call", "FakeJira", "Fault", "jira_time"]
