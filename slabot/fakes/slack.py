"""A stateful fake Slack Web API on an ephemeral loopback port, for the real slack_sdk client.

It serves ``auth.test`` (with the token's scopes in ``X-OAuth-Scopes``),
``chat.postMessage`` (threads: a ``thread_ts`` must name a message of the channel, not a
reply), ``chat.update``, ``chat.postEphemeral``, ``views.open``,
``views.publish``, ``users.lookupByEmail``, ``users.info``, ``conversations.open``,
``conversations.info``, ``usergroups.list`` and ``usergroups.users.list`` over users, user
groups, channels, messages and views it keeps, ``apps.connections.open`` (the app-level
token; the URL of a ``FakeSocketMode``), plus ``response_url`` endpoints
(``/respond/<id>``). Every call is checked against Slack's published method list
(``slack_web_api_methods.json`` beside this module): an unknown method, a missing required
argument, a bad token or a Block Kit payload over Slack's limits is answered the way Slack
answers it and recorded in ``problems`` (the fixtures fail a test that leaves any). Faults
are injectable (``fail_next``: 429 with Retry-After, 5xx, an ``ok: false`` error) and every
call is recorded; ``wait_for`` waits for the calls a listener makes after its
acknowledgement."""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

from slabot.fakes.base import LoopbackFake
from slabot.fakes.chaos import Chaos, reset
from slabot.fakes.slack_blocks import message_problems, view_problems

_REFERENCE_CANDIDATES = (
    Path(__file__).resolve().parent / "slack_web_api_methods.json",
    Path(__file__).resolve().parents[3] / "shared" / "reference" / "slack_web_api_methods.json",
)


def reference_methods() -> dict[str, dict[str, Any]]:
    """Slack's methods with their required arguments (the shipped copy of the reference)."""
    for path in _REFERENCE_CANDIDATES:
        if path.exists():
            data = json.loads(path.read_text(encoding="utf-8"))
            return dict(data["methods"])
    raise FileNotFoundError("slack_web_api_methods.json not found")


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    status: int = 200
    response: dict[str, Any] = field(default_factory=dict)


@dataclass
class Fault:
    count: int
    status: int
    method: str = ""
    retry_after: int | None = None
    error: str | None = None


@dataclass
class FakeSlack(LoopbackFake):
    """The fake's state; ``start()`` serves it."""

    verbs: ClassVar[tuple[str, ...]] = ("GET", "POST")

    token: str = "xoxb-fake-token"
    team_id: str = "T0FAKE"
    bot_user_id: str = "U0SLABOT"
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    usergroups: dict[str, list[str]] = field(default_factory=dict)
    messages: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    views: list[dict[str, Any]] = field(default_factory=list)
    home: dict[str, dict[str, Any]] = field(default_factory=dict)
    responses: list[dict[str, Any]] = field(default_factory=list)
    """Payloads posted to ``response_url`` addresses."""
    calls: list[Call] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    down: bool = False
    """While True, every connection is dropped without an answer (Slack unreachable)."""
    chaos: Chaos | None = None
    """Random faults on a share of the Web API calls (see ``chaos.py``); None: none."""
    scopes: tuple[str, ...] = (
        "commands",
        "chat:write",
        "chat:write.public",
        "im:write",
        "users:read",
        "users:read.email",
        "usergroups:read",
    )
    """The bot token's scopes, as ``auth.test`` lists them in ``X-OAuth-Scopes``."""
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Conversations ``conversations.info`` knows, by id (see ``add_channel``)."""
    app_token: str = "xapp-fake-app-token"
    socket_mode_url: str | None = None
    """What ``apps.connections.open`` answers (a ``FakeSocketMode``'s URL); None: Socket
    Mode is off for the app (``not_allowed_token_type``... as Slack says it)."""

    def __post_init__(self) -> None:
        self.methods = reference_methods()
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._ts = itertools.count(1)

    # --- serving ---

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    def response_url(self, name: str = "r1") -> str:
        return f"{self.url}/respond/{name}"

    # --- test controls ---

    def add_user(
        self,
        user_id: str,
        email: str | None = None,
        *,
        locale: str = "en-US",
        tz: str = "Europe/Paris",
        deleted: bool = False,
    ) -> None:
        with self._lock:
            self.users[user_id] = {
                "id": user_id,
                "team_id": self.team_id,
                "name": user_id.lower(),
                "deleted": deleted,
                "tz": tz,
                "locale": locale,
                "profile": {"email": email} if email else {},
            }

    def add_channel(
        self, channel_id: str, name: str, *, private: bool = False, member: bool = True
    ) -> None:
        with self._lock:
            self.channels[channel_id] = {
                "id": channel_id,
                "name": name,
                "is_channel": not private,
                "is_private": private,
                "is_member": member,
                "is_archived": False,
            }

    def fail_next(
        self,
        count: int,
        status: int = 503,
        *,
        method: str = "",
        retry_after: int | None = None,
        error: str | None = None,
    ) -> None:
        """The next ``count`` calls (of ``method``, or any) answer ``status``: 429 with
        Retry-After, a 5xx with an HTML page, or 200 with ``ok: false`` and ``error``."""
        with self._lock:
            self.faults.append(Fault(count, status, method, retry_after, error))

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method and c.status == 200]

    def wait_for(self, condition: Callable[[], object], timeout: float = 5.0) -> None:
        """Wait until ``condition()`` holds (checked at every call the fake answers)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not condition():
                left = deadline - time.monotonic()
                if left <= 0:
                    methods = [c.method for c in self.calls]
                    raise AssertionError(f"timed out waiting; calls so far: {methods}")
                self._changed.wait(min(left, 0.05))

    def wait_calls(self, method: str, count: int = 1, timeout: float = 5.0) -> list[Call]:
        self.wait_for(lambda: len(self.calls_to(method)) >= count, timeout)
        return self.calls_to(method)

    def thread(self, channel: str, ts: str) -> list[dict[str, Any]]:
        """The replies in the thread of message ``ts``, oldest first."""
        with self._lock:
            return [
                message
                for (where, _), message in sorted(self.messages.items())
                if where == channel and message.get("thread_ts") == ts
            ]

    def wait_responses(self, count: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
        self.wait_for(lambda: len(self.responses) >= count, timeout)
        return list(self.responses)

    # --- the protocol ---

    def _serve(self, handler: BaseHTTPRequestHandler, verb: str) -> None:
        if self.down:
            handler.close_connection = True
            with self._changed:
                self.calls.append(Call(handler.path, {}, -1))
                self._changed.notify_all()
            return
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        args: dict[str, Any] = {k: v[0] for k, v in parse_qs(parts.query).items()}
        content_type = handler.headers.get("Content-Type") or ""
        if raw:
            if "json" in content_type:
                args.update(json.loads(raw))
            else:
                args.update({k: v[0] for k, v in parse_qs(raw.decode()).items()})
        if parts.path.startswith("/respond/"):
            self._respond(handler, args)
            return
        if not parts.path.startswith("/api/"):
            self._send(handler, 404, {"ok": False, "error": "unknown_path"})
            return
        method = parts.path.removeprefix("/api/")
        chaos = self.chaos
        kind = chaos.pick("POST", parts.path) if chaos is not None else None
        if kind is not None and chaos is not None:
            self._chaos(handler, method, args, kind, chaos)
            return
        with self._lock:
            fault = self._take_fault(method)
        if fault is not None:
            self._fault(handler, method, args, fault)
            return
        status, response = self._answer(method, args, handler.headers.get("Authorization"))
        # Recorded before answering: once the client has its answer, the call is visible.
        with self._changed:
            self.calls.append(Call(method, args, status, response))
            self._changed.notify_all()
        headers = {}
        if method == "auth.test" and response.get("ok"):
            headers["X-OAuth-Scopes"] = ",".join(self.scopes)  # as Slack sends it
        self._send(handler, status, response, headers)

    def _chaos(
        self,
        handler: BaseHTTPRequestHandler,
        method: str,
        args: dict[str, Any],
        kind: str,
        chaos: Chaos,
    ) -> None:
        status = {"429": 429, "500": 500, "timeout": 503, "reset": 1}[kind]
        with self._changed:  # recorded with a status no test counts as sent
            self.calls.append(Call(method, args, -status, {"ok": False, "error": kind}))
            self._changed.notify_all()
        if kind == "reset":
            reset(handler)
        elif kind == "429":
            body = {"ok": False, "error": "ratelimited"}
            self._send(handler, 429, body, {"Retry-After": str(chaos.retry_after)})
        else:
            if kind == "timeout":
                time.sleep(chaos.stall)
            self._fault(handler, method, args, Fault(1, status), record=False)

    def _take_fault(self, method: str) -> Fault | None:
        for fault in self.faults:
            if fault.count > 0 and fault.method in ("", method):
                fault.count -= 1
                return fault
        return None

    def _fault(
        self,
        handler: BaseHTTPRequestHandler,
        method: str,
        args: dict[str, Any],
        fault: Fault,
        *,
        record: bool = True,
    ) -> None:
        status = 200 if fault.error is not None else fault.status
        body = {"ok": False, "error": fault.error or ("ratelimited" if status == 429 else "")}
        if record:
            with self._changed:  # a failed call is recorded with a status no test counts as sent
                self.calls.append(Call(method, args, -status, body))
                self._changed.notify_all()
        if fault.error is not None:
            self._send(handler, 200, body)
        elif status == 429:
            retry_after = fault.retry_after if fault.retry_after is not None else 1
            self._send(handler, 429, body, {"Retry-After": str(retry_after)})
        else:
            page = b"<html><body>Slack is having trouble</body></html>"
            handler.send_response(status)
            handler.send_header("Content-Type", "text/html")
            handler.send_header("Content-Length", str(len(page)))
            handler.end_headers()
            handler.wfile.write(page)

    def _answer(
        self, method: str, args: dict[str, Any], auth: str | None
    ) -> tuple[int, dict[str, Any]]:
        if method == "apps.connections.open":
            # Newer than the reference (2020): Socket Mode, with the app-level token.
            if auth != f"Bearer {self.app_token}":
                return 200, {"ok": False, "error": "invalid_auth"}
            if self.socket_mode_url is None:
                return 200, {"ok": False, "error": "not_allowed_token_type"}
            return 200, {"ok": True, "url": self.socket_mode_url}
        spec = self.methods.get(method)
        if spec is None:
            self.problems.append(f"{method}: not a Slack Web API method")
            return 404, {"ok": False, "error": "unknown_method"}
        if auth != f"Bearer {self.token}":
            self.problems.append(f"{method}: called without the bot token")
            return 200, {"ok": False, "error": "invalid_auth"}
        missing = [name for name in spec["required"] if args.get(name) in (None, "")]
        if missing:
            self.problems.append(f"{method}: missing required {', '.join(missing)}")
            return 200, {"ok": False, "error": "invalid_arguments", "missing": missing}
        handler = getattr(self, "_" + method.replace(".", "_"), None)
        if handler is None:
            self.problems.append(f"{method}: the fake does not serve it")
            return 200, {"ok": False, "error": "not_served_by_fake"}
        with self._lock:
            return 200, handler(args)

    def _respond(self, handler: BaseHTTPRequestHandler, payload: dict[str, Any]) -> None:
        problems = message_problems(payload)
        with self._changed:  # recorded before answering, like the API calls
            self.problems.extend(f"response_url: {p}" for p in problems)
            self.responses.append(payload)
            self._changed.notify_all()
        handler.send_response(200)
        handler.send_header("Content-Type", "text/plain")
        handler.send_header("Content-Length", "2")
        handler.end_headers()
        handler.wfile.write(b"ok")

    @staticmethod
    def _send(
        handler: BaseHTTPRequestHandler,
        status: int,
        body: dict[str, Any],
        headers: dict[str, str] | None = None,
    ) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    # --- methods ---

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://acme.slack.com/",
            "team": "Acme",
            "user": "slabot",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": "B0SLABOT",
        }

    def _blocks_ok(self, method: str, args: dict[str, Any]) -> dict[str, Any] | None:
        problems = message_problems(args)
        if problems:
            self.problems.extend(f"{method}: {p}" for p in problems)
            return {"ok": False, "error": "invalid_blocks", "problems": problems}
        return None

    def _chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        refused = self._blocks_ok("chat.postMessage", args)
        if refused:
            return refused
        channel = str(args["channel"])
        if channel.startswith("U"):
            channel = "D" + channel[1:]
        thread_ts = args.get("thread_ts")
        if thread_ts is not None:
            parent = self.messages.get((channel, str(thread_ts)))
            if parent is None:
                self.problems.append(f"chat.postMessage: thread_ts {thread_ts} is no message")
                return {"ok": False, "error": "thread_not_found"}
            if parent.get("thread_ts"):
                # Slack threads are one level deep: a reply names the thread's parent.
                self.problems.append(f"chat.postMessage: thread_ts {thread_ts} is a reply")
        ts = f"1800000000.{next(self._ts):06d}"
        self.messages[(channel, ts)] = {
            "text": args.get("text"),
            "blocks": args.get("blocks"),
            "thread_ts": str(thread_ts) if thread_ts is not None else None,
            "history": [],
        }
        return {"ok": True, "channel": channel, "ts": ts, "message": {"text": args.get("text")}}

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        refused = self._blocks_ok("chat.update", args)
        if refused:
            return refused
        key = (str(args["channel"]), str(args["ts"]))
        message = self.messages.get(key)
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        message["history"].append({"text": message["text"], "blocks": message["blocks"]})
        message.update(text=args.get("text"), blocks=args.get("blocks"))
        return {"ok": True, "channel": key[0], "ts": key[1], "text": args.get("text")}

    def _chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        refused = self._blocks_ok("chat.postEphemeral", args)
        return refused or {"ok": True, "message_ts": f"1800000000.{next(self._ts):06d}"}

    def _views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        view = args["view"]
        view = json.loads(view) if isinstance(view, str) else view
        problems = view_problems(view)
        if problems:
            self.problems.extend(f"views.open: {p}" for p in problems)
            return {"ok": False, "error": "invalid_arguments", "problems": problems}
        self.views.append(view)
        return {"ok": True, "view": {"id": f"V{len(self.views):05d}", **view}}

    def _views_publish(self, args: dict[str, Any]) -> dict[str, Any]:
        view = args["view"]
        view = json.loads(view) if isinstance(view, str) else view
        problems = view_problems(view)
        if problems:
            self.problems.extend(f"views.publish: {p}" for p in problems)
            return {"ok": False, "error": "invalid_arguments", "problems": problems}
        self.home[str(args["user_id"])] = view
        return {"ok": True, "view": {"id": "VHOME", **view}}

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(str(args.get("user") or ""))
        if user is None:
            return {"ok": False, "error": "user_not_found"}
        shown = dict(user)
        if str(args.get("include_locale")).lower() not in ("true", "1"):
            shown.pop("locale", None)
        return {"ok": True, "user": shown}

    def _users_lookupByEmail(self, args: dict[str, Any]) -> dict[str, Any]:
        email = str(args["email"]).lower()
        for user in self.users.values():
            if (user["profile"].get("email") or "").lower() == email:
                shown = dict(user)
                shown.pop("locale", None)
                return {"ok": True, "user": shown}
        return {"ok": False, "error": "users_not_found"}

    def _conversations_open(self, args: dict[str, Any]) -> dict[str, Any]:
        users = str(args.get("users") or "")
        if not users or "," in users or users not in self.users:
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "channel": {"id": "D" + users[1:]}}

    def _conversations_info(self, args: dict[str, Any]) -> dict[str, Any]:
        if not {"channels:read", "groups:read"} & set(self.scopes):
            return {"ok": False, "error": "missing_scope", "needed": "channels:read"}
        channel = self.channels.get(str(args.get("channel") or ""))
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        if channel["is_private"] and not channel["is_member"]:
            return {"ok": False, "error": "channel_not_found"}  # Slack hides it
        return {"ok": True, "channel": dict(channel)}

    def _usergroups_list(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "usergroups": [
                {"id": group_id, "handle": group_id.lower(), "user_count": len(members)}
                for group_id, members in sorted(self.usergroups.items())
            ],
        }

    def _usergroups_users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        members = self.usergroups.get(str(args["usergroup"]))
        if members is None:
            return {"ok": False, "error": "no_such_subteam"}
        return {"ok": True, "users": list(members)}


class FakeSocketMode:
    """Slack's Socket Mode end, on an ephemeral loopback port (``ws://127.0.0.1:PORT``).

    A client that connects gets ``hello``; ``push`` sends an envelope (Socket Mode envelopes
    are not signed: the app-level token that opened the connection authenticates them) and
    ``wait_ack`` returns the client's acknowledgement of it, with its payload (a slash
    command's answer). Set ``FakeSlack.socket_mode_url`` to ``url`` so that
    ``apps.connections.open`` hands it out.
    """

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self.acks: dict[str, dict[str, Any]] = {}
        self.connections: list[Any] = []
        self.opened = 0
        self._server: Any = None

    def start(self) -> FakeSocketMode:
        from websockets.sync.server import serve

        def session(connection: Any) -> None:
            with self._lock:
                self.connections.append(connection)
                self.opened += 1
                self._lock.notify_all()
            connection.send(
                json.dumps(
                    {"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A0"}}
                )
            )
            try:
                for raw in connection:
                    message = json.loads(raw)
                    with self._lock:
                        if "envelope_id" in message:
                            self.acks[str(message["envelope_id"])] = message
                        self._lock.notify_all()
            except Exception:  # the client went away
                pass
            finally:
                with self._lock:
                    if connection in self.connections:
                        self.connections.remove(connection)

        self._server = serve(session, "127.0.0.1", 0)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        port = self._server.socket.getsockname()[1]
        return f"ws://127.0.0.1:{port}/link/?ticket=fake"

    def wait_connected(self, timeout: float = 10.0) -> None:
        with self._lock:
            if not self._lock.wait_for(lambda: bool(self.connections), timeout):
                raise AssertionError("no Socket Mode client connected")

    def push(self, kind: str, payload: dict[str, Any], envelope_id: str | None = None) -> str:
        """Send an envelope (``slash_commands``, ``interactive``, ``events_api``) to the
        connected client; returns its id."""
        envelope = envelope_id or uuid.uuid4().hex
        with self._lock:
            connection = self.connections[-1]
        connection.send(
            json.dumps(
                {
                    "envelope_id": envelope,
                    "type": kind,
                    "payload": payload,
                    "accepts_response_payload": kind != "events_api",
                    "retry_attempt": 0,
                    "retry_reason": "",
                }
            )
        )
        return envelope

    def wait_ack(self, envelope_id: str, timeout: float = 10.0) -> dict[str, Any]:
        with self._lock:
            if not self._lock.wait_for(lambda: envelope_id in self.acks, timeout):
                raise AssertionError(f"envelope {envelope_id} was not acknowledged")
            return self.acks[envelope_id]
