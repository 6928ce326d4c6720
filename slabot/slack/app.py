"""The Bolt app: ``build_app`` wires ``/sla``, the buttons, the modals and App Home to slabot.

Sync Bolt (no async twin). Construction makes no network call: the token comes with the
``WebClient`` and is checked (``auth.test``) on the first request. Listeners acknowledge
first and then work (Slack wants an answer within 3 seconds), except modal submissions,
whose acknowledgement carries the outcome (field errors or the confirmation view) and so
comes after the reclassification is stored. Every text comes from the catalogs, in the
reader's language (their Slack locale).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from slabot.slack import cards, ids
from slabot.slack.authz import Authorizer, Verdict
from slabot.slack.blocks import escape
from slabot.slack.commands import Card, Explain, Help, Reclassify, Usage, parse_command
from slabot.slack.config import SlackConfig
from slabot.slack.directory import Directory, SlackUser
from slabot.slack.home import publish_home
from slabot.slack.i18n import Catalog, catalog, language_of
from slabot.slack.modals import metadata, notice_modal, reclassify_modal, snooze_modal, submitted
from slabot.slack.nudges import check_thresholds, owe_refresh
from slabot.slack.reclassify import actor_name, reclassify
from slabot.slack.references import TicketLinks
from slabot.slack.settings import SlackSettings
from slabot.slack.store_access import SlackStore, TicketNotReadableError
from slabot.slack.texts import target_name, when
from slabot.store.services import TicketService

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def make_client(
    settings: SlackSettings, *, timeout: int = 10, rate_limit_retries: int = 1
) -> WebClient:
    """A Web API client for the bot token at ``settings.api_url``; a 429 is retried once
    after Slack's Retry-After (``RateLimitErrorRetryHandler``) before it reaches the caller."""
    client = WebClient(
        token=settings.bot_token.reveal(), base_url=settings.api_url, timeout=timeout
    )
    if rate_limit_retries:
        client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=rate_limit_retries))
    return client


@dataclass(frozen=True, slots=True)
class SlackServices:
    """What the listeners use: the store's services, the config, the clock, Slack's users."""

    tickets: TicketService
    store: SlackStore
    config: SlackConfig
    clock: Clock
    directory: Directory
    authorizer: Authorizer

    @classmethod
    def build(
        cls,
        client: WebClient,
        tickets: TicketService,
        config: SlackConfig,
        clock: Clock,
        links: TicketLinks | None = None,
        *,
        monotonic: Callable[[], float] | None = None,
    ) -> SlackServices:
        """Wire the Slack side to a ticket service; refuses nudge thresholds the service
        does not mark."""
        check_thresholds(config.nudges, tickets.thresholds)
        timing: dict[str, Any] = {} if monotonic is None else {"clock": monotonic}
        return cls(
            tickets=tickets,
            store=SlackStore(tickets.engine, tickets.policies, links),
            config=config,
            clock=clock,
            directory=Directory(client, ttl=config.user_cache_seconds, **timing),
            authorizer=Authorizer(client, config.reclassify, **timing),
        )


def build_app(
    settings: SlackSettings,
    client: WebClient,
    services: SlackServices,
    *,
    listener_executor: Executor | None = None,
) -> App:
    """The Slack app. HTTP requests reach it at ``POST /slack/events`` (see
    ``slabot.slack.transport``); with ``SLACK_APP_TOKEN`` set, Socket Mode does instead."""
    app = App(
        name="slabot",
        signing_secret=settings.signing_secret.reveal(),
        client=client,
        token_verification_enabled=False,
        listener_executor=listener_executor,
        logger=logging.getLogger("slabot.slack.bolt"),
    )
    Listeners(services).register(app)
    return app


class Listeners:
    """The app's listeners, over the services (one instance per app)."""

    def __init__(self, services: SlackServices) -> None:
        self.s = services

    def register(self, app: App) -> None:
        app.command("/sla")(self.sla_command)
        app.action(ids.RECLASSIFY)(self.reclassify_button)
        app.action(re.compile(f"^({ids.SNOOZE_1H}|{ids.SNOOZE_4H})$"))(self.snooze_button)
        app.action(ids.OPEN)(self.open_button)
        app.action(ids.ACK)(self.ack_button)
        app.action(ids.ASSIGN)(self.assign_button)
        app.view(ids.RECLASSIFY_VIEW)(self.reclassify_submitted)
        app.view(ids.SNOOZE_VIEW)(self.snooze_submitted)
        app.event("app_home_opened")(self.home_opened)

    # --- who reads -------------------------------------------------------------------------

    def reader(self, user_id: str) -> tuple[Catalog, tzinfo | None, SlackUser | None]:
        """The reader's catalog and time zone (the defaults when Slack cannot say)."""
        try:
            user = self.s.directory.user(user_id)
        except (SlackApiError, SlackClientError, OSError) as error:
            log.warning(
                "slack: users.info for %s failed (%s); using defaults",
                user_id,
                type(error).__name__,
            )
            user = None
        t = catalog(language_of(user.locale if user else None, self.s.config.language))
        return t, (user.zone if user else None), user

    def refusal(self, t: Catalog, verdict: Verdict) -> str:
        if verdict.reason == "nobody":
            return t("refused.nobody")
        groups = ", ".join(f"<!subteam^{g}>" for g in self.s.authorizer.groups)
        return t("refused.reclassify", groups=groups or t("refused.no_groups"))

    # --- /sla --------------------------------------------------------------------------------

    def sla_command(self, ack: Ack, command: dict[str, Any], respond: Respond) -> None:
        ack()
        user_id = str(command.get("user_id") or "")
        t, zone, user = self.reader(user_id)
        try:
            text = str(command.get("text") or "")
            trigger_id = str(command.get("trigger_id") or "")
            self._sla(t, zone, user, user_id, text, trigger_id, respond)
        except TicketNotReadableError as error:
            log.error("slack: /sla %s: %s", command.get("text"), error)
            respond(text=t("error.unreadable"), response_type="ephemeral")
        except Exception:
            log.exception("slack: /sla %r failed", command.get("text"))
            respond(text=t("error.internal"), response_type="ephemeral")

    def _sla(
        self,
        t: Catalog,
        zone: tzinfo | None,
        user: SlackUser | None,
        user_id: str,
        text: str,
        trigger_id: str,
        respond: Respond,
    ) -> None:
        parsed = parse_command(text)
        if isinstance(parsed, Help):
            respond(text=t("help.title"), blocks=cards.help_blocks(t), response_type="ephemeral")
            return
        if isinstance(parsed, Usage):
            message = t(f"usage.{parsed.problem}", **parsed.params) + "\n" + t("usage.hint")
            respond(text=message, blocks=cards.notice(message), response_type="ephemeral")
            return
        now = self.s.clock()
        if isinstance(parsed, Reclassify):
            verdict = self.s.authorizer.check(user_id, "reclassification", parsed.ref.label)
            if not verdict.allowed:
                message = self.refusal(t, verdict)
                respond(text=message, blocks=cards.notice(message), response_type="ephemeral")
                return
        view = self.s.store.find(parsed.ref, now)
        if view is None:
            message = t("ticket.unknown", ticket=parsed.ref.label)
            respond(text=message, blocks=cards.notice(message), response_type="ephemeral")
            return
        if isinstance(parsed, Card):
            respond(text=view.label, blocks=cards.card(t, view, zone), response_type="ephemeral")
        elif isinstance(parsed, Explain):
            blocks = cards.explanation(t, view, zone)
            respond(
                text=t("explain.title", ticket=view.label), blocks=blocks, response_type="ephemeral"
            )
        else:
            actor = actor_name(user_id, user.email if user else None)
            outcome = reclassify(
                self.s.tickets,
                self.s.store,
                t,
                view,
                parsed.priority,
                parsed.reason,
                actor,
                now,
                request_key=f"slack:command:{trigger_id}" if trigger_id else None,
            )
            message = outcome.message
            if not outcome.ok and outcome.block == ids.PRIORITY_BLOCK:
                message += "\n" + t("usage.reclassify")
            respond(text=message, blocks=cards.notice(message), response_type="ephemeral")

    # --- buttons -----------------------------------------------------------------------------

    def reclassify_button(self, ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        user_id = body["user"]["id"]
        trigger_id = body["trigger_id"]
        ref = str(body["actions"][0].get("value") or "")
        t, _zone, _user = self.reader(user_id)
        verdict = self.s.authorizer.check(user_id, "reclassification", ref)
        if not verdict.allowed:
            client.views_open(
                trigger_id=trigger_id,
                view=notice_modal(t, t("modal.refused.title"), self.refusal(t, verdict)),
            )
            return
        view = self.s.store.view_by_ref(ref, self.s.clock())
        if view is None:
            message = t("ticket.unknown", ticket=ref)
            client.views_open(
                trigger_id=trigger_id, view=notice_modal(t, t("modal.reclassify.title"), message)
            )
            return
        client.views_open(trigger_id=trigger_id, view=reclassify_modal(t, view))

    def snooze_button(self, ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        user_id = body["user"]["id"]
        action = body["actions"][0]
        hours = ids.SNOOZE_HOURS[action["action_id"]]
        t, zone, _user = self.reader(user_id)
        now = self.s.clock()
        nudge = self.s.store.nudge(int(action.get("value") or 0))
        view = self.s.store.view(nudge.ticket_id, now) if nudge is not None else None
        if nudge is None or view is None:
            client.views_open(
                trigger_id=body["trigger_id"],
                view=notice_modal(t, t("modal.snooze.title"), t("snooze.gone")),
            )
            return
        until = when(t, now + timedelta(hours=hours), zone)
        client.views_open(
            trigger_id=body["trigger_id"],
            view=snooze_modal(
                t, nudge.nudge_id, hours, view.label, target_name(t, nudge.target), until
            ),
        )

    def open_button(self, ack: Ack) -> None:
        ack()  # a link: Slack opens it; the app only acknowledges the click

    def ack_button(self, ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        """ "I'm on it": recorded (history entry, the breach row), said in the thread, and
        the breach is not announced again."""
        ack()
        self._take(body, client, assign=False)

    def assign_button(self, ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        """ "Assign to me": as "I'm on it", and the helpdesk is owed the assignment to the
        clicker's e-mail address (Slack's ``users.info`` profile), through the outbox."""
        ack()
        self._take(body, client, assign=True)

    def _take(self, body: dict[str, Any], client: WebClient, *, assign: bool) -> None:
        user_id = body["user"]["id"]
        t, _zone, user = self.reader(user_id)
        channel = str(
            (body.get("channel") or {}).get("id")
            or (body.get("container") or {}).get("channel_id")
            or ""
        )
        now = self.s.clock()
        nudge = self.s.store.nudge(int(body["actions"][0].get("value") or 0))
        view = self.s.store.view(nudge.ticket_id, now) if nudge is not None else None
        if nudge is None or view is None or not nudge.channel:
            client.chat_postEphemeral(channel=channel, user=user_id, text=t("assign.gone"))
            return
        email = user.email if user is not None else None
        if assign and not email:
            client.chat_postEphemeral(channel=channel, user=user_id, text=t("assign.no_email"))
            return
        actor = actor_name(user_id, email)
        taken = self.s.store.take(
            nudge, user_id, actor, now, assign_email=email if assign else None
        )
        if taken is None:
            return  # the same click again: recorded once, said once
        log.info(
            "slack: user %s %s ticket %s (%s breach, nudge %d)",
            user_id,
            "assigned themself" if assign else "acknowledged",
            view.label,
            nudge.target,
            nudge.nudge_id,
        )
        # Said in the message's own language and zone (its readers'), not the clicker's.
        told = catalog(nudge.language or self.s.config.language)
        zone = ZoneInfo(nudge.zone) if nudge.zone else None
        if assign:
            text = told(
                "nudge.assigned", user=f"<@{user_id}>", ticket=view.label, email=escape(email or "")
            )
        else:
            text = told("nudge.acked", user=f"<@{user_id}>", when=when(told, now, zone))
        owe_refresh(self.s.store, nudge.ticket_id, "taken", now)
        client.chat_postMessage(channel=nudge.channel, thread_ts=nudge.thread_ts, text=text)

    # --- modals ------------------------------------------------------------------------------

    def reclassify_submitted(self, ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        user_id = body["user"]["id"]
        t, _zone, user = self.reader(user_id)
        try:
            ref = str(metadata(view).get("ref") or "")
            verdict = self.s.authorizer.check(user_id, "reclassification", ref)
            if not verdict.allowed:
                ack(response_action="errors", errors={ids.REASON_BLOCK: self.refusal(t, verdict)})
                return
            now = self.s.clock()
            ticket = self.s.store.view_by_ref(ref, now)
            if ticket is None:
                ack(
                    response_action="errors",
                    errors={ids.REASON_BLOCK: t("ticket.unknown", ticket=ref)},
                )
                return
            priority = submitted(view, ids.PRIORITY_BLOCK)
            if not priority:
                ack(
                    response_action="errors",
                    errors={ids.PRIORITY_BLOCK: t("reclassify.error.choose")},
                )
                return
            reason = submitted(view, ids.REASON_BLOCK) or ""
            actor = actor_name(user_id, user.email if user else None)
            outcome = reclassify(
                self.s.tickets,
                self.s.store,
                t,
                ticket,
                priority,
                reason,
                actor,
                now,
                request_key=f"slack:view:{view['id']}" if view.get("id") else None,
            )
        except Exception:
            log.exception("slack: reclassify modal failed")
            ack(response_action="errors", errors={ids.REASON_BLOCK: t("error.internal")})
            return
        if not outcome.ok:
            ack(
                response_action="errors",
                errors={outcome.block or ids.REASON_BLOCK: outcome.message},
            )
            return
        ack(response_action="update", view=notice_modal(t, t("modal.done.title"), outcome.message))

    def snooze_submitted(self, ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        user_id = body["user"]["id"]
        t, zone, _user = self.reader(user_id)
        data = metadata(view)
        reason = (submitted(view, ids.REASON_BLOCK) or "").strip()
        if not reason:
            ack(response_action="errors", errors={ids.REASON_BLOCK: t("snooze.error.reason")})
            return
        now = self.s.clock()
        hours = int(data.get("hours") or 1)
        until = now + timedelta(hours=hours)
        nudge = self.s.store.snooze(int(data.get("nudge") or 0), user_id, reason, until, now)
        if nudge is None:
            ack(response_action="errors", errors={ids.REASON_BLOCK: t("snooze.gone")})
            return
        log.info(
            "slack: user %s snoozed nudge %d (ticket %d, %s) until %s: %s",
            user_id,
            nudge.nudge_id,
            nudge.ticket_id,
            nudge.target,
            until.isoformat(),
            reason,
        )
        owe_refresh(self.s.store, nudge.ticket_id, "snoozed", now)
        message = t("snooze.done", until=when(t, until, zone), reason=reason)
        ack(response_action="update", view=notice_modal(t, t("modal.snooze.title"), message))

    # --- App Home ----------------------------------------------------------------------------

    def home_opened(self, event: dict[str, Any], client: WebClient) -> None:
        if event.get("tab", "home") != "home":
            return
        s = self.s
        publish_home(client, s.store, s.directory, s.config, s.clock, str(event.get("user") or ""))
