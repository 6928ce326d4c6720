"""The dashboard's security through a real ``slabot run`` over HTTP (issue 13, defects 2 and 3).

Defect 2: a path echoed into the 404 page comes back escaped, and every response of the
service, webhooks and metrics included, carries the security headers. Defect 3: a blank
credential or an open dashboard on a non-loopback address stops the start; an open
dashboard answers loopback clients only; a login through the form sets a session cookie and
no credential appears in any link or form; wrong guesses are throttled per address and
logged without the value tried.

Requests go out with ``http.client`` (no redirect followed, no cookie kept: each answer is
seen as the browser gets it). Each test speaks from its own client address through
``X-Forwarded-For``, which uvicorn applies from 127.0.0.1 (as from a proxy on the same host),
so one test's failures never throttle another.
"""

from __future__ import annotations

import http.client
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
from processes import clean_environ, free_port, start, stop, wait_for, wait_ready

from slabot.demo.environment import ZD_ENVIRONMENT, DemoSystems, start_systems, write_config

TOKEN = "dashboard-token-7c41e0b95d"
TICKET = 4711
START = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    text: str

    def header(self, name: str) -> str:
        return self.headers.get(name, "")

    @property
    def cookies(self) -> list[str]:
        return self.headers.get_all("set-cookie") or []


@dataclass
class Client:
    """One client address (``X-Forwarded-For``) talking to the service, with its cookie."""

    port: int
    address: str
    cookie: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def send(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> Answer:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        sent = {"X-Forwarded-For": self.address, **self.extra, **(headers or {})}
        if self.cookie:
            sent["Cookie"] = self.cookie
        try:
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            return Answer(response.status, response.headers, response.read().decode())
        finally:
            connection.close()

    def get(self, path: str, headers: dict[str, str] | None = None) -> Answer:
        return self.send("GET", path, headers)

    def login(self, token: str, next_path: str = "/", **headers: str) -> Answer:
        form = urlencode({"token": token, "next": next_path}).encode()
        return self.send(
            "POST",
            "/login",
            {"Content-Type": "application/x-www-form-urlencoded", **headers},
            form,
        )


BEARER = {"Authorization": f"Bearer {TOKEN}"}
BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


@dataclass
class Service:
    port: int
    log: Path
    systems: DemoSystems

    def client(self, address: str) -> Client:
        return Client(self.port, address)


def run_environ(systems: DemoSystems, folder: Path, **extra: str) -> dict[str, str]:
    config = write_config(folder / "slabot.yaml")
    return systems.environ(
        f"sqlite:///{folder / 'slabot.db'}",
        config,
        {"SLABOT_WEBHOOK_WORKER": "thread", **extra},
    )


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """``slabot run`` with Zendesk, Jira and Slack (the demo's fakes) and a dashboard token,
    holding one Zendesk ticket."""
    folder = tmp_path_factory.mktemp("secured")
    systems = start_systems(START)
    port, log = free_port(), folder / "run.log"
    process = start(run_environ(systems, folder, SLABOT_DASHBOARD_TOKEN=TOKEN), port, log, folder)
    try:
        wait_ready(f"http://127.0.0.1:{port}", process, log)
        running = Service(port, log, systems)
        systems.zendesk.add_user(501, "end-user")
        systems.zendesk.add_organization(701, organization_fields={"support_plan": "premier"})
        systems.zendesk.add_ticket(
            TICKET,
            requester_id=501,
            organization_id=701,
            created_at=datetime.now(UTC),
            priority="urgent",
            custom_fields={ZD_ENVIRONMENT: "env_production"},
        )
        headers, body = systems.zendesk.webhook({"ticket_id": str(TICKET)})
        setup = running.client("198.51.100.1")
        assert setup.send("POST", "/webhooks/zendesk", headers, body).status == 202
        wait_for(
            lambda: setup.get(f"/tickets/zendesk/{TICKET}", BEARER).status == 200,
            30,
            "the ticket on the dashboard",
        )
        yield running
    finally:
        stop(process)
        systems.stop()


# --- defect 2: reflected XSS, security headers --------------------------------------------

XSS_PATHS = {
    "/tickets/zendesk/%3Cscript%3Ealert(1)%3C/script%3E": "<script>alert(1)</script>",
    "/tickets/%3Cimg%20src=x%20onerror=alert(1)%3E/1": "<img src=x onerror=alert(1)>",
}


@pytest.mark.parametrize("path", XSS_PATHS)
def test_a_path_echoed_into_the_404_page_comes_back_escaped(service: Service, path: str) -> None:
    answer = service.client("198.51.100.2").get(path, BEARER)
    assert answer.status == 404
    assert answer.header("content-type").startswith("text/html")
    injected = XSS_PATHS[path]
    assert injected not in answer.text
    assert injected.replace("<", "&lt;").replace(">", "&gt;") in answer.text
    assert "is stored" in answer.text


def routes(service: Service) -> list[tuple[str, str, dict[str, str], bytes | None]]:
    # A delivery of its own (the set-up's has the same ticket id): its own "updated_at", as
    # in the documented trigger body, so it is no replay of the set-up's.
    notice = {"ticket_id": str(TICKET), "updated_at": "2026-12-03T10:00:00Z"}
    signed_headers, signed_body = service.systems.zendesk.webhook(notice)
    return [
        ("GET", "/", BEARER, None),
        ("GET", "/?source=zendesk", BEARER, None),
        ("GET", f"/tickets/zendesk/{TICKET}", BEARER, None),
        ("GET", "/tickets/zendesk/999999", BEARER, None),
        ("GET", "/", {}, None),  # 401
        ("GET", "/", BROWSER, None),  # 303 to the login
        ("GET", "/login", {}, None),
        ("POST", "/logout", {}, b""),
        ("GET", "/healthz", {}, None),
        ("GET", "/readyz", {}, None),
        ("GET", "/metrics", {}, None),
        ("POST", "/webhooks/zendesk", signed_headers, signed_body),
        ("POST", "/webhooks/zendesk", {"Content-Type": "application/json"}, b"{}"),
        ("POST", "/webhooks/jira", {"Content-Type": "application/json"}, b"{}"),
        ("POST", "/slack/events", {"Content-Type": "application/json"}, b"{}"),
        ("GET", "/no/such/route", {}, None),
        ("DELETE", "/healthz", {}, None),  # 405
    ]


def test_every_response_of_the_service_carries_the_security_headers(service: Service) -> None:
    client = service.client("198.51.100.3")
    statuses = set()
    for method, path, headers, body in routes(service):
        answer = client.send(method, path, headers, body)
        statuses.add(answer.status)
        where = f"{method} {path} ({answer.status})"
        policy = answer.header("content-security-policy")
        assert "frame-ancestors 'none'" in policy, where
        assert "default-src 'none'" in policy, where
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy, where
        assert answer.header("x-frame-options") == "DENY", where
        assert answer.header("x-content-type-options") == "nosniff", where
        assert answer.header("referrer-policy") == "no-referrer", where
    assert {200, 202, 303, 401, 404, 405} <= statuses  # the answers varied as intended


def test_a_page_s_script_runs_by_its_own_fresh_nonce(service: Service) -> None:
    client = service.client("198.51.100.4")
    nonces = []
    for _ in range(2):
        answer = client.get("/", BEARER)
        policy = answer.header("content-security-policy")
        (nonce,) = re.findall(r"script-src 'nonce-([^']+)'", policy)
        assert f'<script nonce="{nonce}">' in answer.text
        assert f'<style nonce="{nonce}">' in answer.text
        nonces.append(nonce)
    assert nonces[0] != nonces[1] and len(nonces[0]) >= 22  # 128 bits, per response


# --- defect 3: access ---------------------------------------------------------------------


def exits(environ: dict[str, str], folder: Path, *args: str) -> tuple[int, str]:
    """``slabot run`` that must stop at start: its exit status and output."""
    port, log = free_port(), folder / "refused.log"
    process = start(environ, port, log, folder, *args)
    try:
        status = process.wait(20)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"slabot run started:\n{log.read_text()}") from None
    finally:
        stop(process)
    return status, log.read_text()


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"SLABOT_DASHBOARD_TOKEN": ""}, "SLABOT_DASHBOARD_TOKEN"),
        ({"SLABOT_DASHBOARD_TOKEN": "   "}, "SLABOT_DASHBOARD_TOKEN"),
        ({"SLABOT_DASHBOARD_USER": "ops", "SLABOT_DASHBOARD_PASSWORD": " "}, "PASSWORD"),
        ({"SLABOT_DASHBOARD_USER": "", "SLABOT_DASHBOARD_PASSWORD": "pw-9f"}, "USER"),
    ],
)
def test_a_blank_dashboard_credential_stops_the_start(
    tmp_path: Path, environ: dict[str, str], named: str
) -> None:
    status, output = exits({"DATABASE_URL": f"sqlite:///{tmp_path / 's.db'}", **environ}, tmp_path)
    assert status == 1, output
    assert named in output and "is blank" in output, output
    assert "Traceback" not in output
    assert not (tmp_path / "s.db").exists()  # stopped before touching the database


@pytest.mark.parametrize(
    ("args", "environ"),
    [(("--host", "0.0.0.0"), {}), ((), {"SLABOT_HOST": "::"})],
)
def test_an_open_dashboard_stops_the_start_on_a_non_loopback_address(
    tmp_path: Path, args: tuple[str, ...], environ: dict[str, str]
) -> None:
    status, output = exits(
        {"DATABASE_URL": f"sqlite:///{tmp_path / 's.db'}", **environ}, tmp_path, *args
    )
    assert status == 1, output
    assert "refusing to listen on" in output and "SLABOT_DASHBOARD_TOKEN" in output, output
    assert "Traceback" not in output


def test_an_open_dashboard_on_loopback_answers_local_clients_only(tmp_path: Path) -> None:
    port, log = free_port(), tmp_path / "open.log"
    environ = {"DATABASE_URL": f"sqlite:///{tmp_path / 's.db'}", "SLABOT_WEBHOOK_WORKER": "thread"}
    process = start(clean_environ(environ), port, log, tmp_path)
    try:
        wait_ready(f"http://127.0.0.1:{port}", process, log)
        assert Client(port, "127.0.0.1").get("/").status == 200
        # Through a proxy on this machine that says who the client is: not a local one.
        remote = Client(port, "203.0.113.50").get("/")
        assert remote.status == 403 and "SLABOT_DASHBOARD_TOKEN" in remote.text
        assert Client(port, "203.0.113.50").get("/healthz").status == 200
    finally:
        stop(process)


def attributes(html: str) -> list[str]:
    """Every address and form value a page holds: href, src, action, and input values."""
    return re.findall(r'(?:href|src|action|value)="([^"]*)"', html)


def test_no_credential_appears_in_any_link_or_form_after_a_login(service: Service) -> None:
    client = service.client("198.51.100.5")
    signed_in = client.login(TOKEN)
    assert signed_in.status == 303, signed_in.text
    client.cookie = signed_in.cookies[0].split(";")[0]
    for path in ("/", "/?source=zendesk&plan=premier", f"/tickets/zendesk/{TICKET}", "/login"):
        answer = client.get(path, BROWSER)
        if path == "/login":  # signed in: straight on
            assert (answer.status, answer.header("location")) == (303, "/")
            continue
        assert answer.status == 200, path
        assert TOKEN not in answer.text, path
        assert 'name="token"' not in answer.text, path
        for value in attributes(answer.text):
            assert "token" not in value.lower(), (path, value)
        assert f'href="/tickets/zendesk/{TICKET}"' in answer.text or "tickets" in path


def test_a_token_in_the_address_is_never_taken(service: Service) -> None:
    client = service.client("198.51.100.6")
    script = client.get(f"/?token={TOKEN}")
    assert script.status == 401 and "?token=" in script.text
    browser = client.get(f"/?source=zendesk&token={TOKEN}", BROWSER)
    assert browser.status == 303
    assert browser.header("location") == "/login?next=%2F%3Fsource%3Dzendesk"
    # Signed in, the address is cleaned of it.
    client.cookie = client.login(TOKEN).cookies[0].split(";")[0]
    cleaned = client.get(f"/tickets/zendesk/{TICKET}?token={TOKEN}", BROWSER)
    assert (cleaned.status, cleaned.header("location")) == (303, f"/tickets/zendesk/{TICKET}")


def test_the_login_form_sets_a_strict_http_only_session_cookie(service: Service) -> None:
    client = service.client("198.51.100.7")
    sent = client.get(f"/tickets/zendesk/{TICKET}", BROWSER)
    assert sent.status == 303
    assert sent.header("location") == f"/login?next=%2Ftickets%2Fzendesk%2F{TICKET}"
    form = client.get(sent.header("location"))
    assert form.status == 200 and 'name="token"' in form.text
    assert f'name="next" value="/tickets/zendesk/{TICKET}"' in form.text

    wrong = client.login("not-the-token", f"/tickets/zendesk/{TICKET}")
    assert wrong.status == 401 and "not right" in wrong.text and not wrong.cookies

    answer = client.login(TOKEN, f"/tickets/zendesk/{TICKET}")
    assert (answer.status, answer.header("location")) == (303, f"/tickets/zendesk/{TICKET}")
    (cookie,) = answer.cookies
    flags = [part.strip().lower() for part in cookie.split(";")]
    assert flags[0].startswith("slabot_session=") and TOKEN not in cookie
    assert {"httponly", "samesite=strict", "path=/", "max-age=43200"} <= set(flags)
    assert "secure" not in flags  # plain http here; over https, below
    client.cookie = cookie.split(";")[0]
    page = client.get(f"/tickets/zendesk/{TICKET}", BROWSER)
    assert page.status == 200 and 'id="logout"' in page.text
    assert client.get("/").status == 200  # the cookie alone

    # A login posted from another site is refused, even with the right token.
    other = service.client("198.51.100.8")
    forged = other.login(TOKEN, Origin="https://evil.example")
    assert forged.status == 403 and not forged.cookies
    # Behind a TLS proxy (X-Forwarded-Proto from 127.0.0.1) the cookie is Secure.
    https = other.login(TOKEN, **{"X-Forwarded-Proto": "https"})
    assert "secure" in [part.strip().lower() for part in https.cookies[0].split(";")]
    # A cookie not signed by this service is no login.
    other.cookie = "slabot_session=dashboard.Zm9v.c2lnbmF0dXJl"
    assert other.get("/").status == 401

    out = client.send("POST", "/logout", {"Origin": f"http://127.0.0.1:{service.port}"}, b"")
    assert (out.status, out.header("location")) == (303, "/login")
    assert out.cookies[0].startswith('slabot_session="";') or "max-age=0" in out.cookies[0].lower()


def test_bearer_and_basic_auth_still_serve_scripts(service: Service) -> None:
    client = service.client("198.51.100.9")
    assert client.get("/", BEARER).status == 200
    assert client.get("/").status == 401
    assert "Bearer" in client.get("/").header("www-authenticate")


def test_wrong_guesses_are_throttled_per_address_and_logged_without_the_guess(
    service: Service,
) -> None:
    guesser = service.client("198.51.100.10")
    guesses = [f"guess-{n}-a81f" for n in range(40)]
    began = time.monotonic()
    answers = [guesser.get("/", {"Authorization": f"Bearer {guess}"}) for guess in guesses]
    elapsed = time.monotonic() - began
    statuses = [answer.status for answer in answers]
    assert statuses == [401] * 5 + [429] * 35, statuses
    retry_after = int(answers[-1].header("retry-after"))
    assert 1 <= retry_after <= 60
    # Throttled: the right token and the login form are refused too.
    assert guesser.get("/", BEARER).status == 429
    assert guesser.login(TOKEN).status == 429
    # Another address is not affected.
    assert service.client("198.51.100.11").get("/", BEARER).status == 200
    print(f"40 guesses in {elapsed:.3f}s: 5 checked, 35 refused with 429")

    log = service.log.read_text()
    assert "wrong Authorization header from 198.51.100.10" in log
    assert "198.51.100.10 throttled" in log
    for guess in guesses:
        assert guess not in log
    assert TOKEN not in log


def test_the_login_form_is_throttled_too(service: Service) -> None:
    guesser = service.client("198.51.100.12")
    statuses = [guesser.login(f"form-guess-{n}").status for n in range(7)]
    assert statuses == [401] * 5 + [429] * 2
    assert "wrong login from 198.51.100.12" in service.log.read_text()


def test_the_login_redirects_only_within_the_site(service: Service) -> None:
    client = service.client("198.51.100.13")
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        answer = client.login(TOKEN, target)
        assert (answer.status, answer.header("location")) == (303, "/"), target
        assert urlsplit(answer.header("location")).netloc == ""
