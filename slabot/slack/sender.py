"""The outbox's Slack sender: nudges, breach notices and digests to ``chat.postMessage`` /
``chat.update``.

``SlackSender(item)`` is what ``Outbox.flush("slack", sender, worker)`` calls. It builds the
message from the ticket's state at send time (so a message delayed by an outage is still
true), posts it where it belongs (the assignee's direct messages, else the queue's channel,
else the default channel) or updates the message already posted about the same clock cycle,
and remembers where the message is. One message per ticket, not per target: while a
ticket's message is open, a nudge about another of its clocks is a reply in that message's
thread. A breach rewrites the message (with "I'm on it" and "Assign to me") and posts a
reply in its thread that mentions the assignee (``<@U...>``, found by e-mail) or, for an
unassigned ticket of the configured priorities, ``slack.nudges.unassigned_mention``
(``<!here>``, ``<!subteam^S...>``); the nudge job owes re-announcements (``renotify``) until
someone takes it. Slack's answers map to the outbox's errors:

- 429: ``RetryableWriteError`` with Slack's Retry-After (the client's own
  ``RateLimitErrorRetryHandler`` has already waited once);
- 5xx, time-outs, connection errors and Slack's transient errors: ``RetryableWriteError``:
  the item waits in the outbox and is sent when Slack is back, never dropped;
- anything else Slack refuses (``channel_not_found``, ``not_in_channel``...):
  ``PermanentWriteError``, with Slack's error code and what to fix: the item is
  dead-lettered, kept, and can be replayed once fixed.

Messages stored with an error never carry the token (slack_sdk's messages do not).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from sqlalchemy import Engine

from slabot.slack.blocks import link, section
from slabot.slack.config import SlackConfig
from slabot.slack.directory import Directory
from slabot.slack.i18n import catalog, language_of
from slabot.slack.nudge_messages import NudgeSubject, clock_outcome, nudge_message
from slabot.slack.nudges import BREACH_NOTICE, NUDGE, breach_recorded
from slabot.slack.store_access import NudgeMessage, SlackStore, TicketView
from slabot.slack.texts import target_name, when
from slabot.store.breaches import BREACH
from slabot.store.outbox import (
    ClaimedItem,
    Outbox,
    PermanentWriteError,
    RetryableWriteError,
)

log = logging.getLogger(__name__)

DIGEST = "digest"
KINDS = (NUDGE, BREACH_NOTICE, DIGEST)
Clock = Callable[[], datetime]

_TRANSIENT = frozenset(
    {
        "ratelimited",
        "rate_limited",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
        "team_added_to_org",
    }
)
_MESSAGE_GONE = frozenset({"message_not_found", "cant_update_message", "edit_window_closed"})


@dataclass(frozen=True, slots=True)
class Destination:
    channel: str
    language: str
    zone: tzinfo | None
    """The reader's zone for a direct message; None in a channel (``<!date>`` tokens)."""
    to_assignee: bool
    queue: str | None


def slack_outbox(engine: Engine, clock: Clock) -> Outbox:
    """An outbox for Slack's items that never gives up on a retryable failure (Slack down
    for a weekend still delivers on Monday) and retries at least every 15 minutes."""
    return Outbox(engine, clock, max_attempts=None, max_backoff=timedelta(minutes=15))


class SlackSender:
    """Sends the Slack items of the outbox; one per process (thread-safe)."""

    def __init__(
        self,
        client: WebClient,
        store: SlackStore,
        directory: Directory,
        config: SlackConfig,
        clock: Clock,
    ) -> None:
        self.client = client
        self.store = store
        self.directory = directory
        self.config = config
        self.clock = clock

    def __call__(self, item: ClaimedItem) -> None:
        try:
            if item.kind == DIGEST:
                self._digest(item)
            elif item.kind in (NUDGE, BREACH_NOTICE):
                self._nudge(item)
            else:
                raise PermanentWriteError(
                    f"slack outbox item {item.id}: unknown kind {item.kind!r} (expected "
                    f"{', '.join(KINDS)})"
                )
        except SlackApiError as error:
            raise _write_error(error, item) from None
        except (SlackClientError, OSError, TimeoutError) as error:
            raise RetryableWriteError(
                f"Slack unreachable for {item.kind} ({type(error).__name__}); will retry"
            ) from None

    # --- digests -----------------------------------------------------------------------------

    def _digest(self, item: ClaimedItem) -> None:
        payload = item.payload
        channel, blocks, text = payload.get("channel"), payload.get("blocks"), payload.get("text")
        if not isinstance(channel, str) or not isinstance(blocks, list):
            raise PermanentWriteError(f"digest item {item.id} has no channel or blocks")
        self.client.chat_postMessage(channel=channel, blocks=blocks, text=str(text or ""))

    # --- nudges ------------------------------------------------------------------------------

    def _nudge(self, item: ClaimedItem) -> None:
        payload = item.payload
        now = self.clock()
        event = str(payload.get("event") or ("breach" if item.kind == BREACH_NOTICE else ""))
        if "nudge_id" in payload:  # an update of a posted message: met, refresh, reminder...
            nudge = self.store.nudge(int(payload["nudge_id"]))
            if nudge is None or not nudge.ts or not nudge.channel:
                return  # the ticket (and its nudges) is gone, or nothing was posted
            if event == "reminder":
                self._post(nudge, now, reminder=True)
            elif event == "renotify":
                self._renotify(nudge, now)
            else:
                self._update(nudge, now)
            return
        ticket_id = item.ticket_id
        target = str(payload.get("target") or "")
        cycle = _instant(payload.get("cycle_started_at"))
        if ticket_id is None or not target or cycle is None:
            raise PermanentWriteError(
                f"slack {item.kind} item {item.id} lacks ticket, target or cycle"
            )
        percent = int(payload.get("threshold") or 100)
        nudge = self.store.nudge_for(ticket_id, target, percent, cycle)
        if nudge is None:
            return  # the ticket was deleted since
        posted = self.store.message(ticket_id, target, cycle)
        if posted is not None and posted.nudge_id != nudge.nudge_id:
            self._update(posted, now, percent=percent)  # the breach rewrites the 75% message
            shown: NudgeMessage | None = posted
        elif nudge.ts:
            self._update(nudge, now)  # sent before; the completion was lost
            shown = nudge
        else:
            shown = self._post(nudge, now)
        if percent >= BREACH // 10 and shown is not None:
            self._announce_breach(nudge, shown, now)

    def _announce_breach(self, breach: NudgeMessage, shown: NudgeMessage, now: datetime) -> None:
        """The breach's reply in the thread of the message that shows it, mentioning who
        must act; once (a retried item finds the thread recorded)."""
        current = self.store.nudge(breach.nudge_id)
        if current is None or current.payload.get("thread") or not shown.channel:
            return
        root = shown.thread_ts
        view = self.store.view(breach.ticket_id, now)
        if view is None or root is None:
            return
        if clock_outcome(view, breach.target, breach.cycle_started_at) != "breached":
            return
        due_at = view.decision.targets[breach.target].due
        t = catalog(shown.language or self.config.language)
        zone = ZoneInfo(shown.zone) if shown.zone else None
        text = _squeezed(
            t(
                "nudge.breach_thread",
                mention=self._mention(view),
                ticket=link(view.url, view.label),
                target=target_name(t, breach.target),
                when=when(t, due_at, zone) if due_at else "?",
            )
        )
        self.client.chat_postMessage(
            channel=shown.channel, thread_ts=root, text=text, blocks=[section(text)]
        )
        self.store.record_breach_thread(breach.nudge_id, shown.channel, root, now)

    def _renotify(self, breach: NudgeMessage, now: datetime) -> None:
        """Announce a breach nobody took again, in its thread (owed by the nudge job)."""
        thread = breach.payload.get("thread")
        if not isinstance(thread, dict) or breach.acks:
            return
        view = self.store.view(breach.ticket_id, now)
        if view is None:
            return
        if clock_outcome(view, breach.target, breach.cycle_started_at) != "breached":
            return
        shown = self.store.message(breach.ticket_id, breach.target, breach.cycle_started_at)
        t = catalog((shown.language if shown else None) or self.config.language)
        text = _squeezed(
            t(
                "nudge.renotify",
                mention=self._mention(view),
                ticket=link(view.url, view.label),
                target=target_name(t, breach.target),
            )
        )
        self.client.chat_postMessage(
            channel=str(thread["channel"]),
            thread_ts=str(thread["ts"]),
            text=text,
            blocks=[section(text)],
        )

    def _mention(self, view: TicketView) -> str:
        """``<@U...>`` for an assignee Slack knows by e-mail; else, for an unassigned ticket
        of ``slack.nudges.unassigned_mention_priorities``, the configured group or ``<!here>``;
        else nobody."""
        if view.assignee_email:
            user = self.directory.user_by_email(view.assignee_email)
            if user is not None:
                return f"<@{user.id}>"
        return self.config.nudges.mention_for_unassigned(view.decision.priority) or ""

    def _post(
        self, nudge: NudgeMessage, now: datetime, *, reminder: bool = False
    ) -> NudgeMessage | None:
        """Post the nudge (a reply in the ticket's thread when the ticket has an open
        message); returns it as recorded, or None when nothing was posted."""
        view = self.store.view(nudge.ticket_id, now)
        if view is None:
            return None
        thread = None if reminder else self.store.ticket_thread(nudge.ticket_id, now)
        if thread is not None and thread.nudge_id == nudge.nudge_id:
            thread = None
        thread_ts = thread.thread_ts if thread is not None else None
        if reminder and nudge.channel:
            thread_ts = nudge.thread_ts  # the reminder joins the thread of the message
            destination = Destination(
                nudge.channel,
                nudge.language or self.config.language,
                ZoneInfo(nudge.zone) if nudge.zone else None,
                bool(nudge.zone),
                view.queue,
            )
        elif thread is not None and thread.channel:
            destination = Destination(
                thread.channel,
                thread.language or self.config.language,
                ZoneInfo(thread.zone) if thread.zone else None,
                bool(thread.zone),
                view.queue,
            )
        else:
            destination = self._destination(view.assignee_email, view.queue, view.label)
        t = catalog(destination.language)
        message = nudge_message(
            t, view, _subject(nudge, destination, reminder=reminder), destination.zone
        )
        if message.closed is not None and not reminder:
            self.store.close_message(nudge.nudge_id, message.closed)
            return None  # met before the nudge could be sent: nothing to say any more
        outcome = clock_outcome(view, nudge.target, nudge.cycle_started_at)
        if nudge.threshold >= 100 and outcome != "breached" and not reminder:
            return None  # reclassified to a later due time before the notice went out
        extra: dict[str, Any] = {"thread_ts": thread_ts} if thread_ts else {}
        response = self.client.chat_postMessage(
            channel=destination.channel, text=message.text, blocks=message.blocks, **extra
        )
        channel = str(response.get("channel") or destination.channel)
        zone = getattr(destination.zone, "key", None)
        self.store.record_message(
            nudge.nudge_id,
            channel,
            str(response["ts"]),
            destination.language,
            zone,
            now,
            thread_ts=thread_ts,
        )
        return self.store.nudge(nudge.nudge_id)

    def _update(self, nudge: NudgeMessage, now: datetime, percent: int | None = None) -> None:
        assert nudge.channel and nudge.ts
        view = self.store.view(nudge.ticket_id, now)
        language = nudge.language or self.config.language
        zone = ZoneInfo(nudge.zone) if nudge.zone else None
        t = catalog(language)
        destination = Destination(nudge.channel, language, zone, bool(zone), None)
        subject = _subject(nudge, destination, percent=percent)
        breached = (percent or nudge.threshold) >= BREACH // 10 or breach_recorded(
            self.store, nudge.ticket_id, nudge.target, nudge.cycle_started_at
        )
        breach = self.store.nudge_for(
            nudge.ticket_id, nudge.target, BREACH // 10, nudge.cycle_started_at
        )
        subject = replace(subject, breached=breached, acks=(breach or nudge).acks)
        if view is not None:
            subject = _with_queue(subject, view.queue, bool(zone))
        message = nudge_message(t, view, subject, zone, label=str(nudge.ticket_id))
        try:
            self.client.chat_update(
                channel=nudge.channel, ts=nudge.ts, text=message.text, blocks=message.blocks
            )
        except SlackApiError as error:
            if _code(error) not in _MESSAGE_GONE:
                raise
            log.info(
                "slack: nudge %d's message is gone (%s); posting anew", nudge.nudge_id, _code(error)
            )
            if message.closed is None:
                self._post(nudge, now)
            return
        if message.closed is not None:
            self.store.close_message(nudge.nudge_id, message.closed)

    def _destination(self, email: str | None, queue: str | None, label: str) -> Destination:
        nudges = self.config.nudges
        if nudges.dm_assignee and email:
            user = self.directory.user_by_email(email)
            if user is not None:
                return Destination(
                    self.directory.dm_channel(user.id),
                    language_of(user.locale, self.config.language),
                    user.zone or ZoneInfo("UTC"),
                    True,
                    queue,
                )
        channel = nudges.queue_channels.get(queue or "") or nudges.default_channel
        if channel is None:
            raise PermanentWriteError(
                f"no place in Slack for the nudge about {label}: its assignee "
                f"({'unknown' if not email else 'not found in Slack'}) and its queue "
                f"({queue or 'none'}) have none; set slack.nudges.queue_channels or "
                "slack.nudges.default_channel, then replay the item"
            )
        return Destination(channel, self.config.channel_language(channel), None, False, queue)


def _subject(
    nudge: NudgeMessage,
    destination: Destination,
    *,
    reminder: bool = False,
    percent: int | None = None,
) -> NudgeSubject:
    snoozes = nudge.payload.get("snoozes") or []
    last: dict[str, Any] = snoozes[-1] if snoozes and isinstance(snoozes[-1], dict) else {}
    return NudgeSubject(
        nudge_id=nudge.nudge_id,
        target=nudge.target,
        percent=percent or nudge.threshold,
        cycle_started_at=nudge.cycle_started_at,
        snoozed_until=nudge.snoozed_until,
        snoozed_by=last.get("by"),
        snooze_reason=last.get("reason"),
        reminder=reminder,
        to_assignee=destination.to_assignee,
        queue=destination.queue,
    )


def _squeezed(text: str) -> str:
    """One space between words (an empty mention leaves two)."""
    return " ".join(text.split())


def _with_queue(subject: NudgeSubject, queue: str | None, to_assignee: bool) -> NudgeSubject:
    return replace(subject, queue=queue, to_assignee=to_assignee)


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _code(error: SlackApiError) -> str:
    try:
        return str(error.response.get("error") or "")
    except Exception:
        return ""


def _write_error(error: SlackApiError, item: ClaimedItem) -> Exception:
    response = error.response
    status = int(getattr(response, "status_code", 0) or 0)
    code = _code(error)
    what = f"Slack {item.kind} (outbox item {item.id})"
    if status == 429 or code in ("ratelimited", "rate_limited"):
        retry_after = _retry_after(response)
        return RetryableWriteError(
            f"{what}: rate limited by Slack; retrying after {retry_after or 'a backoff'} s",
            retry_after=retry_after,
        )
    if status >= 500 or code in _TRANSIENT:
        return RetryableWriteError(f"{what}: Slack answered {status} {code}; will retry".strip())
    return PermanentWriteError(
        f"{what}: Slack refused it ({code or status}); fix the cause (the bot may need to be "
        "invited to the channel, or a scope added) and replay the item"
    )


def _retry_after(response: Any) -> float | None:
    headers = getattr(response, "headers", None) or {}
    for name, value in headers.items():
        if name.lower() == "retry-after":
            raw = value[0] if isinstance(value, list) else value
            try:
                return max(float(raw), 0.0)
            except (TypeError, ValueError):
                return None
    return None
