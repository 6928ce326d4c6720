"""Flushing the outbox: the writes slabot owes Zendesk, Jira and Slack, sent at least once.

The services put owed writes in the ``outbox`` table (``OutboxItem``) in the same
transaction as the decision that calls for them. A flusher takes them out again:

- ``Outbox.claim`` leases due items to one worker in a short transaction: it selects items
  that are not done and whose ``next_attempt_at`` has come (oldest first), then pushes their
  ``next_attempt_at`` out by the lease and counts the attempt. On PostgreSQL the select locks
  the rows ``FOR UPDATE SKIP LOCKED``, so concurrent workers take disjoint batches without
  waiting on each other. On SQLite a single writer is used: write transactions begin
  ``IMMEDIATE`` (``db.for_writing``), so claims simply take turns.
- The worker sends each item (no database transaction is open meanwhile), then calls
  ``complete`` or ``fail`` with the attempt number it was given. The attempt number is a
  fencing token: a worker whose lease ran out, and whose item was claimed again by another,
  holds an old number and can no longer complete or fail it.
- ``fail`` schedules a retry (exponential backoff with jitter, or the helpdesk's
  Retry-After) or, for a write the helpdesk refuses for good, dead-letters it: it stays not
  done, its ``next_attempt_at`` becomes NULL and ``last_error`` says why. ``dead_letters``
  and ``depth`` report them; ``replay`` makes a dead item due again.

``flush`` is the loop around these calls. Senders are plain callables (no HTTP here): they
raise ``RetryableWriteError`` or ``PermanentWriteError``, whose messages are stored and so
must never carry secrets. See docs/outbox.md for the guarantee and its limits.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Engine, func, select, update
from sqlalchemy.orm import Session

from bot.errors import SlabotError
from slabot.store.models import OutboxItem
from slabot.store.retry import DEFAULT_RETRY, RetryPolicy, with_retry

Clock = Callable[[], datetime]

log = logging.getLogger(__name__)

DEFAULT_LEASE = timedelta(minutes=5)
DEFAULT_BACKOFF = timedelta(seconds=30)
DEFAULT_MAX_BACKOFF = timedelta(hours=1)
DEFAULT_MAX_ATTEMPTS = 50
"""With the default backoff, about two days of retries before an item is dead-lettered."""
MAX_ERROR_LENGTH = 2000
"""Longer error texts are cut to this many characters before they are stored."""


class OutboxError(SlabotError):
    """An outbox call was given something it cannot use (a naive clock, a bad lease...)."""


class WriteError(SlabotError):
    """A sender could not make a write. Its message is stored in ``last_error`` and shown to
    operators, so it must say what went wrong without any secret (no tokens, no auth headers,
    no URLs carrying credentials)."""


class RetryableWriteError(WriteError):
    """The write may succeed later: a timeout, a 5xx, a 429 rate limit, a network error.

    ``retry_after`` (seconds or a timedelta) is the helpdesk's Retry-After, when it gave one;
    the item is then retried no sooner than that instead of after the computed backoff.
    """

    def __init__(self, message: str = "", *, retry_after: float | timedelta | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentWriteError(WriteError):
    """The helpdesk refused the write for good (a 4xx validation error, an unknown ticket):
    retrying cannot help, so the item is dead-lettered until someone replays it."""


COMPLETE_RETRY = RetryPolicy(attempts=10, first_delay=0.2, max_delay=5.0)
"""Recording a write made: 10 attempts over about 25 s (a PostgreSQL restart under load takes
longer than ``DEFAULT_RETRY``'s 1.4 s, and each completion lost is a write sent twice)."""


@dataclass(frozen=True, slots=True)
class _Item:
    """What every view of an outbox item shows first: which write it is, and to whom."""

    id: int
    target_system: str
    ticket_id: int | None
    kind: str
    payload: dict[str, Any]
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class ClaimedItem(_Item):
    """An outbox item leased to one worker until ``lease_until``, at attempt ``attempt``."""

    attempt: int
    """This claim's attempt number (1 for the first); pass it to ``complete`` and ``fail``."""
    lease_until: datetime
    created_at: datetime


@dataclass(frozen=True, slots=True)
class DeadLetter(_Item):
    """An item given up on: not done, not scheduled, with the error that stopped it."""

    attempts: int
    last_error: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class OutboxDepth:
    """The backlog, for health checks and metrics."""

    pending: int
    """Items still to be sent: due, leased to a worker, or waiting for their next attempt."""
    due: int
    """Of those, items whose next attempt has come (not leased, not backing off)."""
    dead: int
    """Dead letters: not done and not scheduled."""
    oldest_created_at: datetime | None
    """When the oldest pending item was enqueued (None when nothing is pending)."""
    oldest_age: timedelta | None
    """How long the oldest pending item has waited (None when nothing is pending)."""


@dataclass(slots=True)
class FlushReport:
    """What one ``flush`` did."""

    sent: int = 0
    """Items sent and completed."""
    retrying: int = 0
    """Items that failed and were scheduled again."""
    dead: int = 0
    """Items dead-lettered (refused for good, or out of attempts)."""
    skipped: int = 0
    """Items not sent because their lease had already run out when their turn came."""
    lost: int = 0
    """Items sent whose completion was refused: the lease had expired and the item had been
    claimed again (the write may then be sent twice; the idempotency key lets the helpdesk
    recognise the repeat)."""
    keys: list[str] = field(default_factory=list)
    """Idempotency keys of the items sent and completed, in order."""


Sender = Callable[[ClaimedItem], None]


class Outbox:
    """The outbox of one database; thread-safe, one instance per process is enough.

    ``clock`` returns aware datetimes (inject a fake one in tests). ``backoff`` and
    ``max_backoff`` shape the retry schedule, ``max_attempts`` bounds it (None: retry for
    ever), ``retry`` is the policy for riding out database outages, ``rand`` the source of
    jitter (a float in [0, 1)).
    """

    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        *,
        backoff: timedelta = DEFAULT_BACKOFF,
        max_backoff: timedelta = DEFAULT_MAX_BACKOFF,
        jitter: float = 0.2,
        max_attempts: int | None = DEFAULT_MAX_ATTEMPTS,
        retry: RetryPolicy = DEFAULT_RETRY,
        rand: Callable[[], float] = random.random,
        complete_retry: RetryPolicy | None = None,
    ) -> None:
        if backoff <= timedelta(0) or max_backoff < backoff:
            raise OutboxError("backoff must be positive and at most max_backoff")
        if not 0 <= jitter < 1:
            raise OutboxError("jitter is a fraction from 0 (none) up to, not including, 1")
        if max_attempts is not None and max_attempts < 1:
            raise OutboxError("max_attempts must be at least 1 (or None: no limit)")
        self.engine = engine
        self.clock = clock
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.jitter = jitter
        self.max_attempts = max_attempts
        self.retry = retry
        self.complete_retry = complete_retry or (
            COMPLETE_RETRY if retry is DEFAULT_RETRY else retry
        )
        """For ``complete``: the write was made, and a record lost now sends it again after
        the lease, so recording it rides out a database restart (about 25 s) by default."""
        self._random = rand

    def now(self) -> datetime:
        instant = self.clock()
        if instant.tzinfo is None or instant.utcoffset() is None:
            raise OutboxError("the clock returned a naive datetime; it must return aware ones")
        return instant

    # --- claiming and settling ---------------------------------------------------------------

    def claim(
        self,
        target_system: str,
        worker_id: str,
        limit: int = 50,
        lease: timedelta = DEFAULT_LEASE,
    ) -> list[ClaimedItem]:
        """Lease up to ``limit`` due items of ``target_system`` to ``worker_id``, oldest due
        first. Each comes back as due ``lease`` from now unless completed or failed first."""
        if limit < 1:
            raise OutboxError("claim at least one item (limit >= 1)")
        if lease <= timedelta(0):
            raise OutboxError("the lease must be positive")

        def work(session: Session) -> list[ClaimedItem]:
            now = self.now()
            until = now + lease
            due = session.scalars(
                select(OutboxItem)
                .where(
                    OutboxItem.target_system == target_system,
                    OutboxItem.done_at.is_(None),
                    OutboxItem.next_attempt_at <= now,
                )
                .order_by(OutboxItem.next_attempt_at, OutboxItem.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
            if not due:
                return []
            session.execute(
                update(OutboxItem)
                .where(OutboxItem.id.in_([item.id for item in due]))
                .values(attempts=OutboxItem.attempts + 1, next_attempt_at=until)
                .execution_options(synchronize_session=False)
            )
            return [
                ClaimedItem(**_item_fields(item), attempt=item.attempts + 1, lease_until=until)
                for item in due
            ]

        claimed = with_retry(
            self.engine, work, policy=self.retry, what=f"claiming {target_system} outbox items"
        )
        if claimed:
            log.debug("%s claimed %d %s outbox items", worker_id, len(claimed), target_system)
        return claimed

    def complete(self, item: ClaimedItem | int, attempt: int | None = None) -> bool:
        """Mark the item done, if ``attempt`` (default: the claim's own) is still its latest
        attempt. False when the lease was lost to a newer claim, or the item was already
        settled (done, or superseded by a newer write): then nothing changes."""
        item_id, attempt = _identify(item, attempt)

        def work(session: Session) -> bool:
            return self._complete(session, item_id, attempt)

        return with_retry(
            self.engine, work, policy=self.complete_retry, what=f"completing item {item_id}"
        )

    def complete_all(self, items: Sequence[ClaimedItem]) -> int:
        """Mark the items done in one transaction, each as ``complete`` would (only if its
        claim's attempt is still its latest); how many were. A batch sent in one request is
        settled in one commit, not one per item: on SQLite each commit takes the one write
        lock that the webhooks' delivery records wait for."""

        def work(session: Session) -> int:
            return sum(self._complete(session, item.id, item.attempt) for item in items)

        if not items:
            return 0
        return with_retry(
            self.engine, work, policy=self.complete_retry, what=f"completing {len(items)} items"
        )

    def _complete(self, session: Session, item_id: int, attempt: int) -> bool:
        """Mark the item done in ``session`` if ``attempt`` is still its latest attempt."""
        result = session.execute(
            update(OutboxItem)
            .where(*_latest_attempt(item_id, attempt))
            .values(done_at=self.now(), next_attempt_at=None)
            .execution_options(synchronize_session=False)
        )
        return _rowcount(result) == 1

    def fail(
        self,
        item: ClaimedItem | int,
        attempt: int | None,
        error: str,
        retryable: bool,
        retry_after: float | timedelta | None = None,
    ) -> bool:
        """Record a failed attempt, if ``attempt`` is still the item's latest.

        Retryable: the item is due again after ``retry_after`` when given (the helpdesk's
        Retry-After), else after the backoff (``backoff * 2^(attempts-1)``, at most
        ``max_backoff``, shortened by up to ``jitter``), unless it has used up
        ``max_attempts``. Not retryable (or out of attempts): dead-lettered, with
        ``next_attempt_at`` NULL and ``last_error`` set. ``error`` is stored as given (cut to
        ``MAX_ERROR_LENGTH``): pass only text that carries no secret. Returns whether the
        item was updated (False: the lease was lost, or the item is already done).
        """
        item_id, attempt = _identify(item, attempt)
        text = (error or "no details given")[:MAX_ERROR_LENGTH]
        wait = _seconds(retry_after)

        def work(session: Session) -> bool:
            row = session.scalars(
                select(OutboxItem).where(*_latest_attempt(item_id, attempt)).with_for_update()
            ).one_or_none()
            if row is None:
                return False
            now = self.now()
            exhausted = self.max_attempts is not None and row.attempts >= self.max_attempts
            if retryable and not exhausted:
                delay = timedelta(seconds=wait) if wait is not None else self.delay(row.attempts)
                row.next_attempt_at = now + delay
                row.last_error = text
            else:
                row.next_attempt_at = None
                row.last_error = (
                    f"gave up after {row.attempts} attempts: {text}"[:MAX_ERROR_LENGTH]
                    if retryable
                    else text
                )
            return True

        return with_retry(self.engine, work, policy=self.retry, what=f"failing item {item_id}")

    def delay(self, attempts: int) -> timedelta:
        """The backoff after the ``attempts``-th failed attempt: ``backoff * 2^(attempts-1)``,
        capped at ``max_backoff``, then shortened by a random fraction of at most ``jitter``."""
        exponent = min(max(attempts, 1) - 1, 40)
        raw: timedelta = min(self.max_backoff, self.backoff * 2**exponent)
        shortening: float = self.jitter * self._random()
        return raw * (1 - shortening)

    # --- health and repair ---------------------------------------------------------------------

    def dead_letters(self, target_system: str | None = None, limit: int = 100) -> list[DeadLetter]:
        """Items given up on (oldest first): not done and not scheduled."""
        query = select(OutboxItem).where(
            OutboxItem.done_at.is_(None), OutboxItem.next_attempt_at.is_(None)
        )
        if target_system is not None:
            query = query.where(OutboxItem.target_system == target_system)

        def work(session: Session) -> list[DeadLetter]:
            return [
                DeadLetter(**_item_fields(row), attempts=row.attempts, last_error=row.last_error)
                for row in session.scalars(query.order_by(OutboxItem.id).limit(limit))
            ]

        return with_retry(self.engine, work, policy=self.retry, what="listing dead letters")

    def depth(self, target_system: str | None = None) -> OutboxDepth:
        """How many items are pending, due and dead, and how old the oldest pending one is."""
        scope: list[ColumnElement[bool]] = [OutboxItem.done_at.is_(None)]
        if target_system is not None:
            scope.append(OutboxItem.target_system == target_system)

        def work(session: Session) -> OutboxDepth:
            now = self.now()
            pending, oldest = session.execute(
                select(func.count(), func.min(OutboxItem.created_at)).where(
                    *scope, OutboxItem.next_attempt_at.is_not(None)
                )
            ).one()
            due = session.scalar(
                select(func.count()).where(*scope, OutboxItem.next_attempt_at <= now)
            )
            dead = session.scalar(
                select(func.count()).where(*scope, OutboxItem.next_attempt_at.is_(None))
            )
            oldest_at = _instant(oldest)
            return OutboxDepth(
                pending=pending or 0,
                due=due or 0,
                dead=dead or 0,
                oldest_created_at=oldest_at,
                oldest_age=None if oldest_at is None else max(now - oldest_at, timedelta(0)),
            )

        return with_retry(self.engine, work, policy=self.retry, what="measuring the outbox")

    def replay(self, item_id: int) -> bool:
        """Make a dead item due now (its ``last_error`` stays until the next attempt). False
        when there is no such dead item. Attempt numbers keep counting, so an item that had
        used up ``max_attempts`` gets one more attempt per replay."""

        def work(session: Session) -> bool:
            result = session.execute(
                update(OutboxItem)
                .where(
                    OutboxItem.id == item_id,
                    OutboxItem.done_at.is_(None),
                    OutboxItem.next_attempt_at.is_(None),
                )
                .values(next_attempt_at=self.now())
                .execution_options(synchronize_session=False)
            )
            return _rowcount(result) == 1

        replayed = with_retry(
            self.engine, work, policy=self.retry, what=f"replaying item {item_id}"
        )
        if replayed:
            log.info("outbox item %d replayed", item_id)
        return replayed

    # --- the loop ------------------------------------------------------------------------------

    def flush(
        self,
        target_system: str,
        sender: Sender,
        worker_id: str,
        limit: int = 50,
        *,
        lease: timedelta = DEFAULT_LEASE,
        max_batches: int | None = None,
    ) -> FlushReport:
        """Claim and send due items of ``target_system`` batch after batch until none is due
        (or ``max_batches`` batches were done); returns what happened.

        ``sender(item)`` returns when the write was made, raises ``RetryableWriteError`` or
        ``PermanentWriteError`` when it was not. Any other exception counts as retryable; its
        type (not its message, which may hold anything) is stored and it is logged. An item
        whose lease has run out before its turn is left for the next claim instead of sent.
        ``DatabaseUnavailableError`` propagates: call ``flush`` again later.
        """
        report = FlushReport()
        batches = 0
        while max_batches is None or batches < max_batches:
            claimed = self.claim(target_system, worker_id, limit, lease)
            if not claimed:
                break
            batches += 1
            self._send_batch(claimed, sender, worker_id, report)
        return report

    def _send_batch(
        self,
        claimed: Sequence[ClaimedItem],
        sender: Sender,
        worker_id: str,
        report: FlushReport,
    ) -> None:
        for item in claimed:
            if self.now() >= item.lease_until:
                report.skipped += 1
                continue
            try:
                sender(item)
            except RetryableWriteError as error:
                if self.fail(item, item.attempt, str(error), True, error.retry_after):
                    if self._is_dead(item):
                        report.dead += 1
                    else:
                        report.retrying += 1
                continue
            except PermanentWriteError as error:
                if self.fail(item, item.attempt, str(error), False):
                    report.dead += 1
                continue
            except Exception as error:
                log.error(
                    "%s: the %s sender raised %s for outbox item %d (%s); will retry",
                    worker_id,
                    item.target_system,
                    type(error).__name__,
                    item.id,
                    item.kind,
                    exc_info=True,
                )
                message = f"unexpected {type(error).__name__} from the sender (see the log)"
                if self.fail(item, item.attempt, message, True):
                    if self._is_dead(item):
                        report.dead += 1
                    else:
                        report.retrying += 1
                continue
            if self.complete(item, item.attempt):
                report.sent += 1
                report.keys.append(item.idempotency_key)
            else:
                report.lost += 1
                log.warning(
                    "%s: outbox item %d was sent after its lease was lost (attempt %d)",
                    worker_id,
                    item.id,
                    item.attempt,
                )

    def _is_dead(self, item: ClaimedItem) -> bool:
        return self.max_attempts is not None and item.attempt >= self.max_attempts


def _item_fields(row: OutboxItem) -> dict[str, Any]:
    """What a ``ClaimedItem`` and a ``DeadLetter`` take from the row alike (the payload
    copied)."""
    return {
        "id": row.id,
        "target_system": row.target_system,
        "ticket_id": row.ticket_id,
        "kind": row.kind,
        "payload": dict(row.payload or {}),
        "idempotency_key": row.idempotency_key,
        "created_at": row.created_at,
    }


def _latest_attempt(item_id: int, attempt: int) -> tuple[ColumnElement[bool], ...]:
    """The item, if not done and ``attempt`` is still its latest (the claim's fencing token)."""
    return (
        OutboxItem.id == item_id,
        OutboxItem.attempts == attempt,
        OutboxItem.done_at.is_(None),
    )


def _identify(item: ClaimedItem | int, attempt: int | None) -> tuple[int, int]:
    if isinstance(item, ClaimedItem):
        return item.id, item.attempt if attempt is None else attempt
    if attempt is None:
        raise OutboxError(f"outbox item {item}: say which attempt this is (the claim's number)")
    return item, attempt


def _seconds(value: float | timedelta | None) -> float | None:
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds != seconds:  # NaN
        raise OutboxError("retry_after is not a number")
    return max(seconds, 0.0)


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def _instant(value: Any) -> datetime | None:
    """An aggregate over a ``UTCDateTime`` column, as an aware instant (SQLite gives text)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise TypeError(f"the database returned {value!r} for an instant")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
