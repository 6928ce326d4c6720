"""Who is who in Slack: users by e-mail, their locale and time zone, their DM channel (cached).

Every answer is kept for ``ttl`` seconds (a monotonic clock, injectable), the misses too, so
a nudge run or a busy channel does not ask Slack the same question again and again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

log = logging.getLogger(__name__)

_NOT_FOUND_ERRORS = frozenset({"users_not_found", "user_not_found", "account_inactive"})


@dataclass(frozen=True, slots=True)
class SlackUser:
    """What slabot needs to know about a Slack user."""

    id: str
    email: str | None
    locale: str | None
    """Slack's locale code, like ``fr-FR`` (None when Slack did not say)."""
    tz: str | None
    """IANA zone name, like ``Europe/Paris``."""
    deleted: bool = False

    @property
    def zone(self) -> ZoneInfo | None:
        if not self.tz:
            return None
        try:
            return ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError):
            return None


class _Cache:
    def __init__(self, ttl: float, clock: Callable[[], float]) -> None:
        self.ttl = ttl
        self.clock = clock
        self._values: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[bool, Any]:
        with self._lock:
            found = self._values.get(key)
            if found is None or self.clock() - found[0] >= self.ttl:
                return False, None
            return True, found[1]

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._values[key] = (self.clock(), value)


class Directory:
    """Slack users as slabot needs them, cached; Slack errors other than "not found"
    propagate (the caller decides whether to retry)."""

    def __init__(
        self,
        client: WebClient,
        *,
        ttl: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self._users = _Cache(ttl, clock)
        self._emails = _Cache(ttl, clock)
        self._dms = _Cache(ttl, clock)

    def user(self, user_id: str) -> SlackUser | None:
        """``users.info`` (with the locale); None for an unknown user."""
        cached, value = self._users.get(user_id)
        if cached:
            return value  # type: ignore[no-any-return]
        try:
            response = self.client.users_info(user=user_id, include_locale=True)
        except SlackApiError as error:
            if _error_code(error) not in _NOT_FOUND_ERRORS:
                raise
            found = None
        else:
            found = _user(response.get("user") or {})
        self._users.put(user_id, found)
        return found

    def user_by_email(self, email: str) -> SlackUser | None:
        """The Slack user with this e-mail address (``users.lookupByEmail``), with their
        locale (``users.info``); None when nobody in the workspace has it."""
        key = email.strip().lower()
        cached, user_id = self._emails.get(key)
        if not cached:
            try:
                response = self.client.users_lookupByEmail(email=key)
            except SlackApiError as error:
                if _error_code(error) not in _NOT_FOUND_ERRORS:
                    raise
                user_id = None
            else:
                user_id = (response.get("user") or {}).get("id")
            self._emails.put(key, user_id)
        if not user_id:
            return None
        user = self.user(str(user_id))
        return None if user is None or user.deleted else user

    def dm_channel(self, user_id: str) -> str:
        """The direct-message channel between slabot and the user (``conversations.open``)."""
        cached, channel = self._dms.get(user_id)
        if cached:
            return str(channel)
        response = self.client.conversations_open(users=user_id)
        channel = str((response.get("channel") or {}).get("id") or "")
        if not channel:
            raise SlackClientError("conversations.open returned no channel")
        self._dms.put(user_id, channel)
        return channel


def _user(data: dict[str, Any]) -> SlackUser | None:
    user_id = data.get("id")
    if not user_id:
        return None
    profile = data.get("profile") or {}
    email = profile.get("email")
    return SlackUser(
        id=str(user_id),
        email=str(email).lower() if email else None,
        locale=data.get("locale"),
        tz=data.get("tz"),
        deleted=bool(data.get("deleted")),
    )


def _error_code(error: SlackApiError) -> str:
    response = error.response
    try:
        return str(response.get("error") or "")
    except Exception:  # a response without a JSON body
        return ""
