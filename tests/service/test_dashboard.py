"""The dashboard over HTTP: open tickets by next breach, filters, the ticket's explained clocks
as a timeline (a holiday skipped, pauses), its access control, and that every page is escaped
HTML from a template (through the running service: tests/service/test_dashboard_security.py)."""

from __future__ import annotations

import ast
import base64
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import Clock
from dashboard_support import HOLIDAY, NOW, SUBJECT, load
from starlette.requests import Request
from starlette.testclient import TestClient

from slabot.service import dashboard
from slabot.service.access import Throttle, client_key
from slabot.service.app import create_app
from slabot.service.runtime import Runtime, build_runtime
from slabot.service.settings import ServiceSettings, load_settings
from slabot.store.migrate import upgrade


def make(tmp_path: Path, **environ: str) -> Runtime:
    (tmp_path / "empty.yaml").write_text("", encoding="utf-8")
    settings = load_settings(
        {"DATABASE_URL": f"sqlite:///{tmp_path / 'board.db'}", **environ},
        tmp_path / "empty.yaml",
    )
    runtime = build_runtime(settings, Clock(NOW))
    upgrade(runtime.engine)
    load(runtime)
    return runtime


LOOPBACK = ("127.0.0.1", 50000)
"""An open dashboard answers loopback clients only (the test client's default is not one)."""


@contextmanager
def opened(tmp_path: Path, **environ: str) -> Iterator[TestClient]:
    """A test client of a dashboard over the loaded tickets, from a loopback address."""
    runtime = make(tmp_path, **environ)
    try:
        with TestClient(create_app(runtime), client=LOOPBACK) as client:
            yield client
    finally:
        runtime.close()


@pytest.fixture
def http(tmp_path: Path) -> Iterator[TestClient]:
    with opened(tmp_path) as client:
        yield client


def refs(html: str) -> list[str]:
    return re.findall(r'data-ref="([^"]+)"', html)


def matching(count: int) -> str:
    """The list's count of a filtered list that fits on one page."""
    return (
        f"{count} open ticket matches the filters"
        if count == 1
        else f"{count} open tickets match the filters"
    )


def states(html: str) -> list[str]:
    return re.findall(r'<tr class="state-(\w+)"', html)


def test_open_tickets_are_listed_by_next_breach_with_their_state(http: TestClient) -> None:
    page = http.get("/")
    assert page.status_code == 200
    assert refs(page.text) == [
        "zendesk:102",  # P1: breached an hour after Wednesday 15:00
        "zendesk:101",  # P2: next update breached Thursday 15:00 (24h, around the clock)
        "zendesk:103",  # created now
        "jira:10002",  # next update in a week
        "jira:10001",  # waiting on the customer: no running clock
    ]
    assert states(page.text) == ["breached", "breached", "running", "running", "paused"]
    assert '<span id="count" role="status">5 open tickets</span>' in page.text
    assert "zendesk:104" not in page.text  # solved
    assert page.text.count("data-due=") == 4  # a live countdown per running clock


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("source=jira", ["jira:10002", "jira:10001"]),
        ("priority=P1", ["zendesk:102"]),
        ("plan=standard", ["zendesk:103", "jira:10002"]),
        ("assignee=ana@example.com", ["zendesk:101", "jira:10001"]),
        ("source=zendesk&plan=premier", ["zendesk:102", "zendesk:101"]),
    ],
)
def test_filters_narrow_the_list(http: TestClient, query: str, expected: list[str]) -> None:
    page = http.get(f"/?{query}")
    assert refs(page.text) == expected
    assert f">{matching(len(expected))}</span>" in page.text


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("state=breached", ["zendesk:102", "zendesk:101"]),
        ("state=running", ["zendesk:103", "jira:10002"]),
        ("state=paused", ["jira:10001"]),
        ("group=OPS", ["jira:10002", "jira:10001"]),
        ("group=Tier+2", ["zendesk:101"]),
        ("unassigned=1", ["zendesk:103", "jira:10002"]),
        ("unassigned=1&group=OPS", ["jira:10002"]),
        ("state=breached&group=Billing", ["zendesk:102"]),
        ("q=ZD-102", ["zendesk:102"]),
        ("q=zd-10", ["zendesk:102", "zendesk:101", "zendesk:103"]),
        ("q=ANA%40example", ["zendesk:101", "jira:10001"]),
        ("q=billing", ["zendesk:102"]),
        ("q=jira+10002", ["jira:10002"]),
        ("q=ana&state=paused", ["jira:10001"]),
        ("q=nobody", []),
    ],
)
def test_state_group_unassigned_and_search_narrow_the_list_on_the_server(
    http: TestClient, query: str, expected: list[str]
) -> None:
    page = http.get(f"/?{query}")
    assert page.status_code == 200
    assert refs(page.text) == expected
    assert f">{matching(len(expected))}</span>" in page.text
    if not expected:
        assert "No open ticket matches these filters." in page.text


def test_a_ticket_reaching_75_percent_is_at_risk_and_filtered_as_such(tmp_path: Path) -> None:
    from dashboard_support import snapshot

    runtime = make(tmp_path)
    # P1 premier: first response within an hour around the clock; 50 minutes gone.
    runtime.tickets.ingest(
        snapshot(
            "zendesk",
            "105",
            priority="P1",
            channel="phone",
            created_at=NOW - timedelta(minutes=50),
            updated_at=NOW - timedelta(minutes=50),
        )
    )
    try:
        with TestClient(create_app(runtime), client=LOOPBACK) as client:
            page = client.get("/?state=at_risk")
            assert refs(page.text) == ["zendesk:105"]
            assert states(page.text) == ["at_risk"]
            assert '<span class="badge at_risk">at risk</span>' in page.text
    finally:
        runtime.close()


CONTEXT = {
    "subject": "Recordings missing since the upgrade",
    "requester": {"name": "Greta Braun", "email": "greta@acme.example"},
    "organization": "Acme GmbH",
    "assignee_name": "Ana Lima",
}
"""Ticket context a connector may keep in ``tickets.shown`` (read when present)."""


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_the_search_reads_subject_requester_organization_and_assignee_name_when_stored(
    tmp_path: Path, database: str, request: pytest.FixtureRequest
) -> None:
    from dashboard_support import snapshot

    environ = {} if database == "sqlite" else {"DATABASE_URL": request.getfixturevalue("pg_url")}
    runtime = make(tmp_path, **environ)
    runtime.tickets.ingest(
        snapshot("zendesk", "106", assignee="ana@example.com", queue="Tier 2", shown=CONTEXT)
    )
    try:
        with TestClient(create_app(runtime), client=LOOPBACK) as client:
            for words in ("recordings", "UPGRADE recordings", "greta", "acme.example", "acme gmbh"):
                page = client.get("/", params={"q": words})
                assert refs(page.text) == ["zendesk:106"], words
            # The assignee's name finds this ticket; her address finds her other tickets too.
            assert refs(client.get("/", params={"q": "lima"}).text) == ["zendesk:106"]
            assert refs(client.get("/", params={"q": "ana@"}).text) == [
                "zendesk:101",
                "zendesk:106",
                "jira:10001",
            ]
            assert refs(client.get("/", params={"q": "acme nowhere"}).text) == []
            page = client.get("/", params={"q": "greta"}).text
            assert "Recordings missing since the upgrade" in page
            assert "Greta Braun, Acme GmbH" in page and "Ana Lima" in page
            ticket = client.get("/tickets/zendesk/106").text
            assert "Recordings missing since the upgrade" in ticket
            assert "Requested by <b>Greta Braun</b> (Acme GmbH)." in ticket
    finally:
        runtime.close()


def test_the_filters_stay_in_the_address_and_in_the_form(http: TestClient) -> None:
    page = http.get(
        "/", params={"state": "breached", "group": "Billing", "q": "  zd-102 ", "unassigned": ""}
    )
    text = page.text
    assert refs(text) == ["zendesk:102"]
    assert '<option value="breached" selected>breached</option>' in text
    assert '<option value="Billing" selected>Billing</option>' in text
    assert 'id="filter-q" value="zd-102"' in text  # the search as applied, spaces trimmed
    assert 'id="filter-unassigned">' in text  # not checked
    assert 'href="/" id="clear"' in text
    # A link to a ticket is a plain path: nothing of the filters leaks into it.
    assert 'href="/tickets/zendesk/102"' in text
    # A value no open ticket has any more is still shown as chosen, not as "any".
    gone = http.get("/", params={"group": "Retired queue"}).text
    assert '<option value="Retired queue" selected>Retired queue</option>' in gone
    assert "No open ticket matches these filters." in gone
    assert 'id="clear"' not in http.get("/").text


def test_the_list_refreshes_itself_by_default_and_not_when_switched_off(tmp_path: Path) -> None:
    runtime = make(tmp_path)
    try:
        with TestClient(create_app(runtime), client=LOOPBACK) as client:
            text = client.get("/").text
            assert 'data-refresh-seconds="30"' in text and 'id="auto-refresh"' in text
            assert not re.search(r"<meta[^>]+http-equiv", text, re.I)  # never a meta refresh
    finally:
        runtime.close()
    (tmp_path / "off").mkdir()
    runtime = make(tmp_path / "off", SLABOT_DASHBOARD_REFRESH_SECONDS="0")
    try:
        with TestClient(create_app(runtime), client=LOOPBACK) as client:
            text = client.get("/").text
            assert 'data-refresh-seconds="0"' in text and 'id="auto-refresh"' not in text
    finally:
        runtime.close()


def test_the_auto_refresh_gets_the_filtered_rows_alone_and_no_style_or_script(
    http: TestClient,
) -> None:
    """The page parses the answer to take its rows: a style block in it would be refused by
    the page's CSP (a new nonce) and reported as a violation."""
    part = http.get("/?state=breached", headers={"Slabot-Part": "rows"})
    assert part.status_code == 200 and part.headers["cache-control"] == "no-store"
    assert refs(part.text) == ["zendesk:102", "zendesk:101"]
    assert '<span id="count">2 open tickets match the filters</span>' in part.text
    assert "<style" not in part.text and "<script" not in part.text
    assert re.search(r'id="fresh" data-server-now="\d+"', part.text)
    # The same rows as the page's own.
    page = http.get("/?state=breached").text
    body = re.search(r"<tbody[^>]*>(.*)</tbody>", page, re.DOTALL)
    assert body and body.group(1).strip() in part.text


def test_the_rows_alone_are_guarded_like_the_page(tmp_path: Path) -> None:
    runtime = make(tmp_path, SLABOT_DASHBOARD_TOKEN="board-token")
    try:
        with TestClient(create_app(runtime)) as client:
            refused = client.get("/", headers={"Slabot-Part": "rows"})
            assert refused.status_code == 401 and "data-ref" not in refused.text
            ok = client.get(
                "/", headers={"Slabot-Part": "rows", "Authorization": "Bearer board-token"}
            )
            assert len(refs(ok.text)) == 5
    finally:
        runtime.close()


class Markup(HTMLParser):
    """The controls, headers and live regions of a page, with what labels each control."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.controls: list[tuple[str, dict[str, str | None], bool]] = []
        self.headers: list[dict[str, str | None]] = []
        self.countdowns: list[dict[str, str | None]] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag in ("input", "select", "textarea") and found.get("type") != "hidden":
            self.controls.append((tag, found, "label" in self.open))
        if tag == "th":
            self.headers.append(found)
        if "data-due" in found:  # counted down by the page's script
            self.countdowns.append(found)
        if tag == "a":
            self.links.append(found.get("href") or "")
        if tag not in ("input", "meta", "br", "img", "link"):
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.open:
            while self.open.pop() != tag:
                pass


@pytest.mark.parametrize(
    ("path", "counting"), [("/", 4), ("/tickets/zendesk/101", 4), ("/tickets/jira/10001", 0)]
)
def test_pages_label_every_control_scope_every_header_and_keep_countdowns_quiet(
    http: TestClient, path: str, counting: int
) -> None:
    markup = Markup()
    markup.feed(http.get(path).text)
    assert markup.links[0] == "#main"  # the skip link comes first
    for tag, attrs, labelled in markup.controls:
        assert labelled or attrs.get("aria-label"), f"{path}: {tag} {attrs} has no label"
    assert markup.headers, path
    for header in markup.headers:
        assert header.get("scope") in ("col", "row"), f"{path}: <th {header}> without scope"
    assert len(markup.countdowns) == counting, path
    for countdown in markup.countdowns:
        # Rewritten every second: announcing it would drown everything else.
        assert countdown.get("aria-live") == "off", f"{path}: {countdown}"


def test_the_ticket_page_explains_each_clock_as_a_timeline(http: TestClient) -> None:
    page = http.get("/tickets/zendesk/101")
    assert page.status_code == 200
    text = page.text
    assert 'id="clock-first_response"' in text and 'id="clock-restoration"' in text
    assert "4h on customer" in text
    assert f"{HOLIDAY} Thanksgiving" in text  # the closed date skipped
    first_response = text[text.index('id="clock-first_response"') : text.index('id="clock-rest')]
    assert first_response.count('class="span counted"') == 1  # Wednesday 15:00-17:00
    assert first_response.count('class="span ahead"') == 1  # Friday 09:00-11:00
    assert 'class="span closed"' in text
    assert 'class="marker due"' in text and 'class="marker at_risk"' in text


def row_html(html: str, ref: str) -> str:
    start = html.index(f'data-ref="{ref}"')
    return html[start : html.index("</tr>", start)]


def test_each_row_names_subject_requester_organization_group_and_assignee(
    http: TestClient,
) -> None:
    page = http.get("/").text
    assert ">Group</th>" in page
    row = row_html(page, "zendesk:101")
    assert f'<span class="subject">{SUBJECT}</span>' in row
    assert '<span class="subject muted requester">Roger Wilco, Initech GmbH</span>' in row
    assert 'data-label="Group">Tier 2</td>' in row
    assert 'Ana Agent <span class="muted">ana@example.com</span>' in row
    # Only an e-mail address known: that is shown; nobody at all: flagged.
    assert "ana@example.com</td>" in row_html(page, "jira:10001")
    unassigned = row_html(page, "jira:10002")
    assert '<span class="badge unassigned">Unassigned</span>' in unassigned
    assert "Unassigned" not in row_html(page, "zendesk:101")
    assert page.count("badge unassigned") == 2  # jira:10002 and zendesk:103


def test_the_ticket_page_header_names_subject_requester_group_and_assignee(
    http: TestClient,
) -> None:
    text = http.get("/tickets/zendesk/101").text
    assert f'<p class="subject" id="ticket-subject"><b>{SUBJECT}</b></p>' in text
    people = text[
        text.index('id="ticket-people"') : text.index("</p>", text.index("ticket-people"))
    ]
    assert "Requested by <b>Roger Wilco</b> (Initech GmbH)." in people
    assert "Group <b>Tier 2</b>." in people
    assert 'Assigned to <b>Ana Agent</b> <span class="muted">ana@example.com</span>.' in people
    other = http.get("/tickets/jira/10002").text
    assert 'id="ticket-subject"' not in other  # no subject stored: no empty heading
    assert '<span class="badge unassigned">Unassigned</span>' in other


def test_the_ticket_page_shows_pauses(http: TestClient) -> None:
    text = http.get("/tickets/jira/10001").text
    assert 'class="span pause"' in text
    assert "to now" in text  # the pause still running


def test_an_unknown_ticket_is_a_404(http: TestClient) -> None:
    assert http.get("/tickets/zendesk/999").status_code == 404


def test_with_a_token_the_dashboard_refuses_requests_without_it(tmp_path: Path) -> None:
    runtime = make(tmp_path, SLABOT_DASHBOARD_TOKEN="board-token")
    try:
        with TestClient(create_app(runtime)) as client:
            for path in ("/", "/tickets/zendesk/101"):
                refused = client.get(path)
                assert refused.status_code == 401
                assert "Bearer" in refused.headers["www-authenticate"]
                wrong = client.get(path, headers={"Authorization": "Bearer wrong"})
                assert wrong.status_code == 401
            ok = client.get("/", headers={"Authorization": "Bearer board-token"})
            assert ok.status_code == 200
            assert 'href="/tickets/zendesk/101"' in ok.text and "board-token" not in ok.text
            # The token in the address is never taken, even the right one.
            by_query = client.get("/?token=board-token")
            assert by_query.status_code == 401 and "?token=" in by_query.text
            assert client.get("/healthz").status_code == 200  # probes stay open
    finally:
        runtime.close()


def test_basic_auth_guards_the_dashboard_when_configured(tmp_path: Path) -> None:
    runtime = make(tmp_path, SLABOT_DASHBOARD_USER="ops", SLABOT_DASHBOARD_PASSWORD="pa55word")
    try:
        with TestClient(create_app(runtime), client=LOOPBACK) as client:
            assert client.get("/").status_code == 401
            good = base64.b64encode(b"ops:pa55word").decode()
            bad = base64.b64encode(b"ops:guess").decode()
            assert client.get("/", headers={"Authorization": f"Basic {good}"}).status_code == 200
            assert client.get("/", headers={"Authorization": f"Basic {bad}"}).status_code == 401
    finally:
        runtime.close()


def test_an_open_dashboard_refuses_a_client_that_is_not_on_loopback(tmp_path: Path) -> None:
    runtime = make(tmp_path)
    try:
        with TestClient(create_app(runtime), client=("203.0.113.7", 4242)) as client:
            refused = client.get("/")
            assert refused.status_code == 403
            assert "SLABOT_DASHBOARD_TOKEN" in refused.text
            assert client.get("/healthz").status_code == 200
    finally:
        runtime.close()


def test_ticket_values_are_escaped_in_the_pages(tmp_path: Path) -> None:
    from dashboard_support import snapshot

    runtime = make(tmp_path)
    evil = "<script>alert(1)</script>"
    runtime.tickets.ingest(
        snapshot(
            "zendesk",
            "666",
            assignee=f"{evil}@example.com",
            queue=evil,
            shown={
                "subject": evil,
                "requester": evil,
                "organization": evil,
                "assignee_name": evil,
            },
        )
    )
    try:
        with TestClient(create_app(runtime), client=LOOPBACK) as client:
            for path in ("/", "/tickets/zendesk/666", f"/?assignee={evil}@example.com"):
                page = client.get(path)
                assert page.status_code == 200, path
                assert evil not in page.text and "&lt;script&gt;alert(1)" in page.text, path
    finally:
        runtime.close()


SERVICE = Path(dashboard.__file__).resolve().parent
TAG = re.compile(r"<\s*/?\s*(html|body|head|h[1-6]|p|div|span|a|table|tr|td|ul|li|script|form)\b")


def test_no_html_is_built_in_python_every_page_is_a_template() -> None:
    """f-strings or concatenation would skip the templates' autoescaping (as the 404 page
    once did): no module of the service may hold an HTML tag or use HTMLResponse."""
    for module in sorted(SERVICE.glob("*.py")):
        tree = ast.parse(module.read_text(encoding="utf-8"))
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Name | ast.Attribute) and "HTMLResponse" in ast.unparse(node):
                raise AssertionError(f"{module.name}:{node.lineno} uses HTMLResponse")
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docstrings
            ):
                assert not TAG.search(node.value), f"{module.name}:{node.lineno}: {node.value!r}"
    env = dashboard._templates(dashboard.Access(ServiceSettings())).env
    assert env.autoescape is True


def test_templates_carry_nothing_the_content_security_policy_refuses() -> None:
    """The CSP allows the nonce'd script and style blocks only: an inline style="" or an
    on...="" handler in a template would silently do nothing in the browser."""
    for template in sorted((SERVICE / "templates").glob("*.html")):
        text = template.read_text(encoding="utf-8")
        markup = re.sub(r"<(script|style)\b[^>]*>.*?</\1>", "", text, flags=re.DOTALL)
        assert not re.search(r"\sstyle\s*=", markup), f"{template.name}: a style attribute"
        assert not re.search(r"\son[a-z]+\s*=", markup), f"{template.name}: an inline handler"
        for tag in re.findall(r"<(?:script|style)\b[^>]*>", text):
            assert 'nonce="{{ csp_nonce }}"' in tag, f"{template.name}: {tag} without the nonce"
        assert "javascript:" not in text.lower(), template.name


def test_the_throttle_forgets_old_failures_and_remembers_a_bounded_number_of_addresses() -> None:
    now = [0.0]
    throttle = Throttle(allowed=3, window=60.0, capacity=100, clock=lambda: now[0])
    for _ in range(3):
        throttle.failed("192.0.2.1")
    assert throttle.retry_after("192.0.2.1") == 60.0
    assert throttle.retry_after("192.0.2.2") == 0.0
    now[0] = 45.0
    assert throttle.retry_after("192.0.2.1") == 15.0
    now[0] = 60.5  # the first failures are a window old
    assert throttle.retry_after("192.0.2.1") == 0.0
    for number in range(5000):  # an attacker with many addresses
        throttle.failed(f"10.{number // 65536}.{number // 256 % 256}.{number % 256}")
    assert len(throttle) == 100  # the least recently failing were forgotten


def test_failures_from_one_ipv6_network_count_together() -> None:
    def request(host: str) -> Request:
        return Request({"type": "http", "client": (host, 1), "headers": []})

    assert client_key(request("2001:db8:1:2::1")) == client_key(request("2001:db8:1:2:ffff::9"))
    assert client_key(request("2001:db8:1:3::1")) != client_key(request("2001:db8:1:2::1"))
    assert client_key(request("192.0.2.1")) != client_key(request("192.0.2.2"))
