"""Who may read the dashboard: credentials, the login session cookie, throttling, loopback.

- **No credentials configured** (neither ``dashboard_token`` nor ``dashboard_user`` and
  ``dashboard_password``): the dashboard is open, but only to loopback clients. ``slabot
  run`` refuses to start on any other address (``check_bind``), and a request whose client
  address is not loopback (a proxy on the same host that forwards ``X-Forwarded-For``, which
  uvicorn trusts from 127.0.0.1) is refused with 403.
- **Credentials configured**: a browser is sent to ``GET /login``, whose form (the token,
  or the user name and password) sets a signed session cookie (``slabot_session``:
  HttpOnly, SameSite=Strict, Secure over https, 12 hours). Scripts send ``Authorization:
  Bearer <token>`` or basic auth on each request. ``?token=`` in a URL is never accepted
  (it leaks through history, access logs and Referer): it is refused with a message, or,
  with a valid session, redirected to the same address without it.
- The cookie is an ``itsdangerous`` timestamped signature under a key derived (scrypt) from
  the configured credentials: any replica with the same settings accepts it, and changing
  the token or password logs everyone out. Logging out clears it from the browser.
- Every comparison takes constant time (of SHA-256 digests, so lengths leak nothing).
- Wrong credentials (header, basic auth or the login form) are counted per client address
  (an IPv6 address by its /64): after ``FAILURES_ALLOWED`` in ``FAILURE_WINDOW_SECONDS`` the
  address gets 429 with ``Retry-After`` until the oldest failure is a window old. Each
  failure is logged with the address, never the value tried. At most ``TRACKED_ADDRESSES``
  addresses are remembered (the least recently failing are forgotten first).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from typing import Literal
from urllib.parse import parse_qs, urlencode, urlsplit

from itsdangerous import BadSignature, TimestampSigner
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from bot.errors import SlabotError
from slabot.service.settings import ENV_PREFIX, ServiceSettings

log = logging.getLogger(__name__)

SESSION_COOKIE = "slabot_session"
SESSION_SECONDS = 12 * 3600
"""How long a login lasts (the cookie's Max-Age and the signature's age limit)."""
FAILURES_ALLOWED = 5
FAILURE_WINDOW_SECONDS = 60.0
TRACKED_ADDRESSES = 10_000
FORM_BYTES = 4096
"""A login form is a few dozen bytes: a larger body is refused unread."""

Endpoint = Callable[[Request], Awaitable[Response]]
Check = Literal["none", "ok", "wrong"]


class OpenDashboardError(SlabotError):
    """``slabot run`` would serve a dashboard without credentials beyond this machine."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address, or ``localhost``) only ever reaches this machine."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # another name: it may resolve anywhere


def check_bind(service: ServiceSettings, host: str) -> None:
    """Refuse to listen on a non-loopback ``host`` with an open dashboard."""
    if service.dashboard_token is None and service.dashboard_user is None and not is_loopback(host):
        raise OpenDashboardError(
            f"refusing to listen on {host}: the dashboard has no credentials and would show "
            f"every open ticket to anyone who reaches that address. Set {ENV_PREFIX}"
            f"DASHBOARD_TOKEN (`openssl rand -hex 24`), or {ENV_PREFIX}DASHBOARD_USER and "
            f"{ENV_PREFIX}DASHBOARD_PASSWORD, or listen on 127.0.0.1 (--host 127.0.0.1)"
        )


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


def _same(given: bytes, expected: bytes) -> bool:
    """Constant time whatever the lengths: compares fixed-length digests."""
    return hmac.compare_digest(_digest(given), _digest(expected))


def client_key(request: Request) -> str:
    """The address failures are counted under: the client's, an IPv6 one by its /64."""
    host = request.client.host if request.client else "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class Throttle:
    """Failed attempts per address in a sliding window, in bounded memory."""

    def __init__(
        self,
        allowed: int = FAILURES_ALLOWED,
        window: float = FAILURE_WINDOW_SECONDS,
        capacity: int = TRACKED_ADDRESSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.allowed = allowed
        self.window = window
        self.capacity = capacity
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._failures)

    def _recent(self, key: str, now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` may try again (0: it may now)."""
        now = self._clock()
        times = self._recent(key, now)
        if times is None or len(times) < self.allowed:
            return 0.0
        return times[0] + self.window - now

    def failed(self, key: str) -> int:
        """Count a failure of ``key``; returns its failures within the window."""
        now = self._clock()
        times = self._recent(key, now)
        if times is None:
            times = self._failures[key] = deque(maxlen=self.allowed)
        times.append(now)
        self._failures.move_to_end(key)
        while len(self._failures) > self.capacity:
            self._failures.popitem(last=False)
        return len(times)

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)


class Access:
    """The dashboard's access check over ``service``'s credentials (see the module doc)."""

    def __init__(self, service: ServiceSettings, throttle: Throttle | None = None) -> None:
        token = service.dashboard_token.get_secret_value() if service.dashboard_token else ""
        password = service.dashboard_password
        self._token = token.encode()
        self._user = (service.dashboard_user or "").encode()
        self._password = password.get_secret_value().encode() if password else b""
        self.throttle = throttle or Throttle()
        self._signer: TimestampSigner | None = None
        if not self.open:
            # Slow on purpose (about 50 ms, once): a stolen cookie must not make guessing a
            # weak password offline cheap. Fixed salt: every replica derives the same key.
            key = hashlib.scrypt(
                b"\0".join((self._token, self._user, self._password)),
                salt=b"slabot dashboard session v1",
                n=2**14,
                r=8,
                p=1,
                dklen=32,
            )
            self._signer = TimestampSigner(key, salt="slabot.dashboard.session")

    @property
    def open(self) -> bool:
        return not self._token and not self._user

    @property
    def wants_token(self) -> bool:
        return bool(self._token)

    @property
    def wants_password(self) -> bool:
        return bool(self._user)

    # --- checks ---

    def signed_in(self, request: Request) -> bool:
        """Whether the request carries a valid, unexpired session cookie."""
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie or self._signer is None:
            return False
        try:
            self._signer.unsign(cookie, max_age=SESSION_SECONDS)
        except BadSignature:  # forged, expired, or signed before the credentials changed
            return False
        return True

    def check_header(self, request: Request) -> Check:
        """The ``Authorization`` header: absent, right, or wrong."""
        header = request.headers.get("authorization")
        if header is None:
            return "none"
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer" and self._token:
            return "ok" if _same(value.strip().encode(), self._token) else "wrong"
        if scheme == "basic" and self._user:
            try:
                decoded = base64.b64decode(value.strip(), validate=True)
            except (binascii.Error, ValueError):
                return "wrong"
            user, _, given = decoded.partition(b":")
            return "ok" if self._user_and_password(user, given) else "wrong"
        return "wrong"

    def check_form(self, fields: dict[str, str]) -> bool:
        """The login form: its token, or its user name and password."""
        token = fields.get("token", "").strip()
        if token and self._token:
            return _same(token.encode(), self._token)
        user, password = fields.get("user", ""), fields.get("password", "")
        if (user or password) and self._user:
            return self._user_and_password(user.encode(), password.encode())
        return False

    def _user_and_password(self, user: bytes, password: bytes) -> bool:
        # Both compared whatever the first gives: no early answer on a wrong user name.
        user_ok = _same(user, self._user)
        password_ok = _same(password, self._password)
        return user_ok and password_ok

    # --- answers ---

    def log_failure(self, request: Request, what: str) -> None:
        key = client_key(request)
        count = self.throttle.failed(key)
        log.warning(
            "dashboard: wrong %s from %s (%d of %d allowed in %gs)",
            what,
            key,
            count,
            self.throttle.allowed,
            self.throttle.window,
        )
        if count >= self.throttle.allowed:
            log.warning(
                "dashboard: %s throttled for %gs after %d wrong attempts",
                key,
                self.throttle.window,
                count,
            )

    def throttled(self, request: Request) -> Response | None:
        """429 with Retry-After while the client's address is throttled, else None."""
        wait = self.throttle.retry_after(client_key(request))
        if wait <= 0:
            return None
        seconds = max(1, math.ceil(wait))
        return PlainTextResponse(
            f"Too many wrong dashboard credentials from your address: try again in {seconds} s.\n",
            status_code=429,
            headers={"Retry-After": str(seconds), "Cache-Control": "no-store"},
        )

    def session_cookie(self, response: Response, request: Request) -> None:
        assert self._signer is not None
        response.set_cookie(
            SESSION_COOKIE,
            self._signer.sign(b"dashboard").decode(),
            max_age=SESSION_SECONDS,
            path="/",
            # https as the request arrived: uvicorn applies X-Forwarded-Proto from the
            # proxies it trusts (127.0.0.1 unless FORWARDED_ALLOW_IPS says otherwise).
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )

    @staticmethod
    def clear_cookie(response: Response, request: Request) -> None:
        response.delete_cookie(
            SESSION_COOKIE,
            path="/",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )

    def __call__(self, endpoint: Endpoint) -> Endpoint:
        """``endpoint`` behind the check."""

        async def guarded(request: Request) -> Response:
            if self.open:
                if request.client is not None and is_loopback(request.client.host):
                    return await endpoint(request)
                return PlainTextResponse(OPEN_REFUSED, status_code=403)
            if "token" in request.query_params:
                clean = local_path(request, drop=("token",))
                if self.signed_in(request):
                    return RedirectResponse(clean, status_code=303)
                if _browser(request):
                    return to_login(clean)
                return self._challenge(URL_TOKEN_REFUSED)
            if self.signed_in(request):
                return await endpoint(request)
            found = self.check_header(request)
            if found == "none":
                if _browser(request):
                    return to_login(local_path(request))
                return self._challenge(CREDENTIALS_WANTED)
            refused = self.throttled(request)
            if refused is not None:
                return refused
            if found == "ok":
                return await endpoint(request)
            self.log_failure(request, "Authorization header")
            return self._challenge(CREDENTIALS_WRONG)

        return guarded

    def _challenge(self, message: str) -> Response:
        challenge = 'Basic realm="slabot"' if self._user else 'Bearer realm="slabot"'
        return PlainTextResponse(
            message,
            status_code=401,
            headers={"WWW-Authenticate": challenge, "Cache-Control": "no-store"},
        )


OPEN_REFUSED = (
    "This dashboard has no credentials, so it answers only on this machine (loopback). Set "
    f"{ENV_PREFIX}DASHBOARD_TOKEN (or {ENV_PREFIX}DASHBOARD_USER and "
    f"{ENV_PREFIX}DASHBOARD_PASSWORD) to reach it from elsewhere.\n"
)
CREDENTIALS_WANTED = (
    "This dashboard needs its credentials: log in at /login, or send Authorization: Bearer "
    "<token> (or basic auth with its user name and password).\n"
)
CREDENTIALS_WRONG = "Those dashboard credentials are not right.\n"
URL_TOKEN_REFUSED = (
    "The dashboard no longer takes ?token= in the address (it leaks through browser "
    "history, access logs and Referer): log in at /login, or send Authorization: Bearer "
    "<token>.\n"
)


def _browser(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def local_path(request: Request, drop: tuple[str, ...] = ()) -> str:
    """The request's path and query (less ``drop``): where to come back to after a login."""
    query = [(k, v) for k, v in request.query_params.multi_items() if k not in drop]
    path = request.url.path
    return f"{path}?{urlencode(query)}" if query else path


def safe_next(value: str | None) -> str:
    """``value`` if it is a path on this site (never ``//evil`` or a full URL), else ``/``."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return value


def to_login(back_to: str) -> Response:
    return RedirectResponse(
        f"/login?{urlencode({'next': back_to})}" if back_to != "/" else "/login",
        status_code=303,
        headers={"Cache-Control": "no-store"},
    )


def same_origin(request: Request) -> bool:
    """A POST from a page of this site, or from a client that is no browser.

    Browsers say where a request comes from in ``Sec-Fetch-Site`` (every current one): only
    ``same-origin`` (or ``none``, typed by the user) passes. Without it, ``Origin``'s host
    must be this one (the host, not the scheme: behind a TLS-terminating proxy the page is
    https while the request arrives as http). Under ``Referrer-Policy: no-referrer`` Chrome
    sends ``Origin: null`` even from this site's own form, hence Sec-Fetch-Site first.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return True  # curl, a script: no cross-site forgery without a browser
    host = request.headers.get("host", "")
    return origin != "null" and urlsplit(origin).netloc.lower() == host.lower()


async def read_form(request: Request) -> dict[str, str] | None:
    """The urlencoded form's first value per field; None when it is not a small form."""
    if request.headers.get("content-type", "").split(";")[0].strip() != (
        "application/x-www-form-urlencoded"
    ):
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_BYTES:
            return None
    try:
        parsed = parse_qs(body.decode("utf-8"), max_num_fields=10, keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        return None
    return {name: values[0] for name, values in parsed.items()}
