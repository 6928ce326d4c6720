"""What every helpdesk's sync shares: a ticket (or a page of them) mapped, ingested, then finished.

A connector's sync subclasses ``HelpdeskSync`` and gives two things: ``map`` (its pure
mapping: the vendor's bundle -> a ``Mapped`` holding the ``Snapshot`` and the mapping's
warnings) and ``after_ingest`` (what follows the stored snapshot: the agents' priority
changes, the due fields owed). ``apply`` and ``apply_many`` (a page in one transaction,
``TicketService.ingest_many``) are the same for every helpdesk, so a ticket is handled the
same whether its change came by webhook, poll or backfill.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Generic, Protocol, TypeVar

from connectors.common import AgentReclassifications
from slabot.store.retry import DatabaseUnavailableError

if TYPE_CHECKING:
    from slabot.store.services import TicketService
    from slabot.store.snapshot import IngestResult, Snapshot


class MappedTicket(Protocol):
    """What a connector's mapping gives the sync: the snapshot to ingest, and its warnings."""

    @property
    def snapshot(self) -> Snapshot: ...

    @property
    def warnings(self) -> tuple[str, ...]: ...


BundleT = TypeVar("BundleT")
MappedT = TypeVar("MappedT", bound=MappedTicket)


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What syncing one ticket did."""

    ticket: str
    outcome: str
    """The ingest's outcome: ``created``, ``updated``, ``unchanged`` or ``stale``."""
    enqueued: tuple[str, ...]
    reclassified: tuple[str, ...] = ()
    """Per agent priority change applied: ``P1`` (accepted) or ``refused P1``."""
    warnings: tuple[str, ...] = ()


class HelpdeskSync(ABC, Generic[BundleT, MappedT]):
    """Applies one helpdesk's tickets to the store through the store's services; the
    priorities its agents set are applied once each (``reclassifications``)."""

    source: ClassVar[str]
    helpdesk: ClassVar[str]
    """How people name the helpdesk in messages: ``Zendesk``, ``Jira``."""
    change_key_prefix: ClassVar[str]
    """The request keys of the agents' priority changes: ``zendesk:audit``."""
    legacy_source: ClassVar[str]
    """The deliveries that recorded such changes before request keys did."""

    def __init__(
        self,
        tickets: TicketService,
        *,
        priorities: Mapping[str, str],
        helpdesk_name: Callable[[str], str | None],
    ) -> None:
        """``priorities``: the connector's priority mapping (``<source>.priorities``);
        ``helpdesk_name``: the helpdesk's name of one of slabot's priorities."""
        self.tickets = tickets
        self.reclassifications = AgentReclassifications(
            tickets,
            source=self.source,
            helpdesk=self.helpdesk,
            key_prefix=self.change_key_prefix,
            legacy_source=self.legacy_source,
            priorities=priorities,
            priorities_setting=f"{self.source}.priorities",
            helpdesk_name=helpdesk_name,
        )
        self.warnings = 0
        """Mapping warnings seen (unknown time zones, priorities...), for metrics."""

    @abstractmethod
    def map(self, bundle: BundleT) -> MappedT:
        """The connector's pure mapping of one fetched ticket."""

    @abstractmethod
    def after_ingest(self, mapped: MappedT, result: IngestResult) -> SyncResult:
        """What follows once the snapshot is stored (agents' priority changes...)."""

    def apply(self, bundle: BundleT) -> SyncResult:
        """Map the ticket, ingest it (one transaction), then ``after_ingest``."""
        mapped = self._mapped(bundle)
        return self.after_ingest(mapped, self.tickets.ingest(mapped.snapshot))

    def apply_many(self, bundles: Sequence[BundleT]) -> list[SyncResult | Exception]:
        """``apply`` for a page of tickets: mapped one by one, ingested together
        (``TicketService.ingest_many``: one transaction, to the same stored state), then
        ``after_ingest`` for each. Per bundle, in order, its result or the exception that
        kept it out (the others are applied all the same); ``DatabaseUnavailableError`` is
        raised."""
        outcomes: list[SyncResult | Exception | None] = [None] * len(bundles)
        mapped_ones: list[tuple[int, MappedT]] = []
        for index, bundle in enumerate(bundles):
            try:
                mapped = self._mapped(bundle)
            except Exception as error:  # this ticket's outcome, as apply would raise it
                outcomes[index] = error
                continue
            mapped_ones.append((index, mapped))
        ingested = self.tickets.ingest_many([mapped.snapshot for _, mapped in mapped_ones])
        for (index, mapped), result in zip(mapped_ones, ingested, strict=True):
            if isinstance(result, Exception):
                outcomes[index] = result
                continue
            try:
                outcomes[index] = self.after_ingest(mapped, result)
            except DatabaseUnavailableError:
                raise
            except Exception as error:
                outcomes[index] = error
        return [outcome for outcome in outcomes if outcome is not None]

    def _mapped(self, bundle: BundleT) -> MappedT:
        mapped = self.map(bundle)
        for warning in mapped.warnings:
            self.warnings += 1
            # Under the connector's own logger (connectors.zendesk.sync...).
            logging.getLogger(type(self).__module__).warning("%s", warning)
        return mapped
