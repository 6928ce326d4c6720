"""One time zone per dashboard page (issue 15.5): every instant the list, the ticket page, the
refreshed rows and the reports show is a ``<time datetime="...Z">`` whose text is on the
clocks of the one zone the header names, and no instant is written any other way. The zone is
the reader's (the ``slabot_tz`` cookie static/zone.js sets from the browser) when Python knows
it, ``service.dashboard_timezone`` otherwise. The browser's side: test_dashboard_browser.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from dashboard_support import NOW
from starlette.testclient import TestClient
from test_dashboard import opened

from slabot.service import dashboard
from slabot.service.settings import ServiceSettingsError, load_settings

PAGES = (
    "/",
    "/tickets/zendesk/101",  # a holiday skipped, the timeline's spans and marks
    "/tickets/jira/10001",  # waiting on the customer: pauses
    "/tickets/zendesk/102",  # a 24x7 clock, breached
    "/reports?period=2026-11&tz=America/Los_Angeles",
    "/login",
)
CLOCK_TIME = re.compile(r"\d\d?:\d\d")
"""What an instant written in words would show (``14:00``); durations read ``3h 30m``."""
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


class Instants(HTMLParser):
    """A page's ``<time>`` elements, its zone as the header names it, and every text and
    attribute outside a ``<time>`` (but a calendar's hours, a property of the calendar, and
    the script and style blocks)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.times: list[tuple[str, str]] = []
        self.outside: list[str] = []
        self.zone: str | None = None
        self._time: list[str] | None = None
        self._datetime = ""
        self._spans: list[bool] = []
        self._zone_label = False
        self._code = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "time":
            assert self._time is None, "a <time> inside a <time>"
            self._time, self._datetime = [], values.get("datetime") or ""
            return
        if tag in ("script", "style"):
            self._code = True
        if tag == "span":
            self._spans.append("calendar" in (values.get("class") or "").split())
        self._zone_label = values.get("id") == "page-zone"
        self.outside.extend(value for _name, value in attrs if value)

    def handle_endtag(self, tag: str) -> None:
        if tag == "time" and self._time is not None:
            self.times.append((self._datetime, "".join(self._time)))
            self._time = None
        elif tag in ("script", "style"):
            self._code = False
        elif tag == "span" and self._spans:
            self._spans.pop()
        self._zone_label = False

    def handle_data(self, data: str) -> None:
        if self._time is not None:
            self._time.append(data)
        elif self._zone_label:
            self.zone = data.strip()
        elif not self._code and not any(self._spans):
            self.outside.append(data)


def instants(html: str) -> Instants:
    parser = Instants()
    parser.feed(html)
    parser.close()
    return parser


def wall(instant: datetime, zone: str) -> str:
    """How an instant reads in ``zone`` (written here again, not imported: the check)."""
    return instant.astimezone(ZoneInfo(zone)).strftime("%a %d %b %Y %H:%M %Z")


def assert_one_zone(html: str, zone: str, at_least: int) -> list[tuple[datetime, str]]:
    """Every instant of ``html`` is a ``<time>`` in ``zone``, which the header names."""
    found = instants(html)
    assert found.zone == zone
    assert len(found.times) >= at_least, found.times
    shown = []
    for stamp, text in found.times:
        assert ISO_UTC.fullmatch(stamp), stamp
        instant = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        assert text == wall(instant, zone), (stamp, text, zone)
        shown.append((instant, text))
    stray = [text for text in found.outside if CLOCK_TIME.search(text)]
    assert stray == [], f"instants outside a <time>: {stray}"
    return shown


@pytest.fixture
def served(tmp_path: Path) -> Iterator[TestClient]:
    with opened(tmp_path) as client:
        yield client


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Asia/Kolkata"])
def test_every_instant_on_every_page_is_a_time_in_the_readers_zone(
    served: TestClient, zone: str
) -> None:
    if zone != "UTC":
        served.cookies.set(dashboard.ZONE_COOKIE, zone)
    for path in PAGES:
        page = served.get(path)
        assert page.status_code == 200, path
        shown = assert_one_zone(page.text, zone, 1)
        # The header's clock is the service's now: 09:00 in Los Angeles.
        assert (NOW, wall(NOW, zone)) in shown, path
    rows = served.get("/", headers={dashboard.PART_HEADER: "rows"})
    # The auto-refresh's rows have no header: their times are in the same zone all the same.
    found = instants(rows.text)
    assert found.zone is None and len(found.times) == 8  # 4 due instants, two cells each
    assert all(text == wall(datetime.fromisoformat(s), zone) for s, text in found.times)


def test_the_ticket_page_shows_pauses_timeline_and_intervals_in_the_page_zone(
    served: TestClient,
) -> None:
    served.cookies.set(dashboard.ZONE_COOKIE, "Asia/Kolkata")
    html = served.get("/tickets/jira/10001").text
    shown = assert_one_zone(html, "Asia/Kolkata", 10)
    # Waiting on the customer since Wednesday 16:00 in Los Angeles: Thursday 05:30 in Kolkata.
    assert "Paused: <time" in html
    assert any(text == "Thu 26 Nov 2026 05:30 IST" for _instant, text in shown)
    # The calendar is named as the calendar's property, in its own zone.
    assert 'class="calendar">calendar: ' in html and "(America/Los_Angeles)" in html
    timeline = served.get("/tickets/zendesk/101").text
    tips = re.findall(r'<span class="tip">([^<]*)<time datetime="[^"]+">([^<]+)</time>', timeline)
    assert len(tips) > 5
    assert {text[-3:] for _label, text in tips} == {"IST"}
    assert "title=" not in timeline.split('class="timeline"', 1)[1].split("</section>", 1)[0]


def test_the_header_clock_reads_the_services_now_on_the_readers_clock(served: TestClient) -> None:
    served.cookies.set(dashboard.ZONE_COOKIE, "Asia/Kolkata")
    html = served.get("/").text
    assert 'Times in <b id="page-zone">Asia/Kolkata</b>' in html
    # 09:00 in Los Angeles the day after Thanksgiving is 17:00 UTC, 22:30 in India.
    assert '<time datetime="2026-11-27T17:00:00Z">Fri 27 Nov 2026 22:30 IST</time>' in html
    served.cookies.set(dashboard.ZONE_COOKIE, "America/New_York")
    assert ">Fri 27 Nov 2026 12:00 EST</time>" in served.get("/").text


@pytest.mark.parametrize(
    "cookie",
    [
        "Mars/Olympus",
        "../../../../etc/passwd",
        "/usr/share/zoneinfo/UTC",
        "Europe/Paris" + "x" * 500,
        "",
        "europe/paris",  # names are case-sensitive
        "<script>alert(1)</script>",
    ],
)
def test_a_zone_cookie_python_does_not_know_is_ignored(tmp_path: Path, cookie: str) -> None:
    with opened(tmp_path, SLABOT_DASHBOARD_TIMEZONE="Europe/Paris") as client:
        client.cookies.set(dashboard.ZONE_COOKIE, cookie)
        for path in ("/", "/tickets/jira/10001"):
            page = client.get(path)
            assert page.status_code == 200
            assert_one_zone(page.text, "Europe/Paris", 2)
            assert "alert(1)" not in page.text


def test_the_configured_zone_is_the_pages_zone_until_the_browser_says_its_own(
    tmp_path: Path,
) -> None:
    with opened(tmp_path, SLABOT_DASHBOARD_TIMEZONE="America/Los_Angeles") as client:
        shown = assert_one_zone(client.get("/").text, "America/Los_Angeles", 5)
        assert (NOW, "Fri 27 Nov 2026 09:00 PST") in shown
        client.cookies.set(dashboard.ZONE_COOKIE, "Asia/Kolkata")
        assert_one_zone(client.get("/").text, "Asia/Kolkata", 5)


def test_an_unknown_dashboard_timezone_stops_the_start_naming_it(tmp_path: Path) -> None:
    (tmp_path / "empty.yaml").write_text("", encoding="utf-8")
    with pytest.raises(ServiceSettingsError) as caught:
        load_settings({"SLABOT_DASHBOARD_TIMEZONE": "Mars/Olympus"}, tmp_path / "empty.yaml")
    assert "service.dashboard_timezone" in str(caught.value)
    assert "Mars/Olympus" in str(caught.value)
    default = load_settings({}, tmp_path / "empty.yaml")
    assert default.service.dashboard_timezone == "UTC"


def test_the_zone_script_is_served_from_the_dashboards_own_path_under_its_nonce(
    served: TestClient,
) -> None:
    page = served.get("/")
    nonce = re.search(r"'nonce-([^']+)'", page.headers["content-security-policy"])
    assert nonce is not None
    assert f'<script src="/static/zone.js" nonce="{nonce.group(1)}"></script>' in page.text
    script = served.get("/static/zone.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert script.headers["x-content-type-options"] == "nosniff"
    assert "Intl.DateTimeFormat().resolvedOptions().timeZone" in script.text
    assert "slabot_tz=" in script.text and dashboard.ZONE_COOKIE == "slabot_tz"
    # Only the files of the static folder: nothing next to it.
    for other in ("/static/../dashboard.py", "/static/%2e%2e/dashboard.py", "/static/nope.js"):
        assert served.get(other).status_code == 404, other


def test_only_the_time_macro_writes_an_instant() -> None:
    """No template formats an instant itself: each calls ``at()`` from _time.html."""
    for template in sorted(dashboard.TEMPLATES.glob("*.html")):
        text = template.read_text(encoding="utf-8")
        if template.name == "_time.html":
            assert text.count("wall_time") == 1 and text.count("<time ") == 1
            continue
        for written in ("wall_time", "utc_iso", "strftime", "<time", "| local", "isoformat"):
            assert written not in text, f"{template.name}: {written}"
