"""Who may reclassify from Slack: the configured users, and members of the configured groups.

Group members are read with ``usergroups.users.list`` and kept for ``cache_seconds``. When
Slack cannot say (a group id that does not exist, a missing scope, Slack down) the answer is
"no": a refusal can be retried, a wrong grant cannot be taken back. Every refusal is
logged with the user and what they tried.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from slabot.slack.config import Reclassifiers

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a user may act, and for a refusal, why (``not_member`` or ``nobody``)."""

    allowed: bool
    reason: str = ""


class Authorizer:
    """Decides whether a Slack user may reclassify; thread-safe, caches group members."""

    def __init__(
        self,
        client: WebClient,
        config: Reclassifiers,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.config = config
        self._clock = clock
        self._members: dict[str, tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(self.config.user_groups)

    def check(self, user_id: str, action: str, subject: str = "") -> Verdict:
        """May ``user_id`` do ``action`` (on ``subject``)? Refusals are logged."""
        if user_id in self.config.users:
            return Verdict(True)
        for group in self.config.user_groups:
            if user_id in self._group_members(group):
                return Verdict(True)
        reason = "nobody" if not (self.config.users or self.config.user_groups) else "not_member"
        log.warning(
            "slack: refused %s%s by user %s: %s",
            action,
            f" of {subject}" if subject else "",
            user_id,
            "no reclassifiers are configured (slack.reclassify)"
            if reason == "nobody"
            else "not in slack.reclassify.users nor a member of "
            + (", ".join(self.config.user_groups) or "any configured user group"),
        )
        return Verdict(False, reason)

    def _group_members(self, group: str) -> frozenset[str]:
        with self._lock:
            cached = self._members.get(group)
            if cached is not None and self._clock() - cached[0] < self.config.cache_seconds:
                return cached[1]
        try:
            response = self.client.usergroups_users_list(usergroup=group)
        except (SlackApiError, SlackClientError, OSError) as error:
            log.error(
                "slack: cannot read the members of user group %s (%s); its members are refused "
                "until Slack answers (check the id and the usergroups:read scope)",
                group,
                _describe(error),
            )
            return frozenset()
        members = frozenset(str(u) for u in response.get("users") or [])
        with self._lock:
            self._members[group] = (self._clock(), members)
        return members


def _describe(error: Exception) -> str:
    if isinstance(error, SlackApiError):
        try:
            return str(error.response.get("error") or error.response.status_code)
        except Exception:
            return type(error).__name__
    return type(error).__name__
