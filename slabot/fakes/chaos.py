"""Random faults for the fake servers: a share of calls answered 429, 500, too late, or not at all.

``Chaos(rate=0.3, seed=7)`` set on a fake (``fake.chaos = ...``) makes that share of its
calls fail before the fake looks at them, so a failed call never changes the fake's state
(the helpdesk refused or never saw the request):

- ``429``: Too Many Requests with ``Retry-After`` (``retry_after`` seconds);
- ``500``: an internal error;
- ``timeout``: the answer (a 503) comes after ``stall`` seconds, longer than the client's
  time-out;
- ``reset``: the connection is reset (TCP RST) without an answer.

``spare(method, path)`` exempts calls (say, Slack's ``response_url`` posts). ``injected``
counts the faults by kind; ``pause()`` / ``resume()`` switch the faults off and on (a test's
final check reads the fakes without them).
"""

from __future__ import annotations

import random
import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

KINDS = ("429", "500", "timeout", "reset")


@dataclass
class Chaos:
    rate: float
    seed: int = 0
    kinds: tuple[str, ...] = KINDS
    stall: float = 3.0
    """Seconds a ``timeout`` fault waits before answering: more than the client's time-out."""
    retry_after: int = 1
    spare: Callable[[str, str], bool] | None = None
    injected: Counter[str] = field(default_factory=Counter)
    active: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.rate <= 1:
            raise ValueError("rate is a fraction of calls, from 0 to 1")
        unknown = set(self.kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {KINDS}")
        self._random = random.Random(self.seed)
        self._lock = threading.Lock()

    def pick(self, method: str, path: str) -> str | None:
        """The fault for this call, or None to serve it."""
        if not self.active or (self.spare is not None and self.spare(method, path)):
            return None
        with self._lock:
            if self._random.random() >= self.rate:
                return None
            kind = self._random.choice(self.kinds)
            self.injected[kind] += 1
            return kind

    def pause(self) -> None:
        self.active = False

    def resume(self) -> None:
        self.active = True


def reset(handler: BaseHTTPRequestHandler) -> None:
    """Abort the connection with a TCP RST (SO_LINGER 0), answering nothing."""
    connection = handler.connection
    try:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        connection.close()
    except OSError:
        pass
    handler.close_connection = True
