"""The errors the store's use cases share (ingest, reclassify, recompute, events): a ticket
that is not stored, and a stored ticket under a policy the service was not given."""

from __future__ import annotations

from bot.errors import SlabotError


class UnknownTicketError(SlabotError):
    """No ticket with that source and key is stored."""


class PolicyNotLoadedError(SlabotError):
    """A stored ticket names a policy the service was not given."""
