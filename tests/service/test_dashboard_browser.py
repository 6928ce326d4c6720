"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright.

The page is served by uvicorn on an ephemeral loopback port, with a dashboard token, its list
refreshing every two seconds. Each test is sent to the login form and logs in with the token.
They read the rows, their colours and the live countdown, open a ticket's timeline and log
out; use the filters and the search; check that a 375 px wide phone gets cards and no
horizontal scroll; drive the page with the keyboard alone; measure the contrast of every
text colour shown; see every time written in the browser's own time zone; and watch the
auto-refresh pick up a ticket stored after the page loaded, pause while the tab is hidden
and stop when switched off. Screenshots (desktop and phone) go
under artifacts/ (git-ignored). Everything runs under the service's Content-Security-Policy:
any violation the browser reports fails the test. Chromium comes from Debian's ``chromium``
package (``.ci/run`` installs it when missing); Playwright never downloads a browser here.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
import uvicorn
from conftest import Clock
from dashboard_support import NOW, SUBJECT, load, snapshot

from slabot.service.app import create_app
from slabot.service.runtime import Runtime, build_runtime
from slabot.service.settings import load_settings
from slabot.store.migrate import upgrade

CHROMIUM = os.environ.get("SLABOT_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
TOKEN = "browser-dashboard-token-5e2a"
REFRESH_SECONDS = 2
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 812}


class RunningClock(Clock):
    """``NOW`` when the service started, running at the real rate from there (as the page's
    countdown assumes: ``rate`` 1)."""

    rate = 1.0

    def __init__(self, now: datetime) -> None:
        super().__init__(now)
        self.started = time.monotonic()

    def __call__(self) -> datetime:
        return self.now + timedelta(seconds=time.monotonic() - self.started)


@dataclass
class Service:
    url: str
    runtime: Runtime

    def add(self, key: str, **fields: Any) -> None:
        """Store one more Zendesk ticket, created now (running), as a webhook would."""
        now = self.runtime.clock()
        fields.setdefault("created_at", now)
        fields.setdefault("updated_at", now)
        self.runtime.tickets.ingest(snapshot("zendesk", key, **fields))


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    (tmp_path / "empty.yaml").write_text("", encoding="utf-8")
    settings = load_settings(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'board.db'}",
            "SLABOT_DASHBOARD_TOKEN": TOKEN,
            "SLABOT_DASHBOARD_REFRESH_SECONDS": str(REFRESH_SECONDS),
        },
        tmp_path / "empty.yaml",
    )
    runtime = build_runtime(settings, RunningClock(NOW))
    upgrade(runtime.engine)
    load(runtime)
    config = uvicorn.Config(
        create_app(runtime), host="127.0.0.1", port=0, log_config=None, lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "uvicorn did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Service(f"http://127.0.0.1:{port}", runtime)
    finally:
        server.should_exit = True
        thread.join(10)
        runtime.close()


@dataclass
class Browser:
    """Pages of one Chromium; every Content-Security-Policy complaint any of them logs."""

    browser: Any
    refused: list[str] = field(default_factory=list)

    def page(self, viewport: dict[str, int] = DESKTOP, **options: Any) -> Any:
        # Each context is a new, empty profile (no cookie, no local storage); ``options``:
        # Playwright's own for it (``timezone_id``, ``java_script_enabled``).
        page = self.browser.new_context(viewport=viewport, **options).new_page()
        page.on(
            "console",
            lambda message: (
                self.refused.append(message.text)
                if "Content Security Policy" in message.text
                else None
            ),
        )
        return page


@pytest.fixture
def chromium() -> Iterator[Browser]:
    if not shutil.which(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium package")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = Browser(playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS))
        try:
            yield browser
        finally:
            browser.browser.close()
        assert browser.refused == [], browser.refused


def log_in(page: Any, url: str, path: str = "/") -> None:
    page.goto(f"{url}/login?next={quote(path)}")
    page.fill("#login-token", TOKEN)
    page.click("#login-submit")
    page.wait_for_url(f"{url}{path}")


def listed(page: Any) -> list[str]:
    return list(
        page.eval_on_selector_all(
            "#tickets tbody tr[data-ref]", "rows => rows.map(r => r.dataset.ref)"
        )
    )


def screenshot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def test_the_dashboard_in_chromium(service: Service, chromium: Browser) -> None:
    from playwright.sync_api import expect

    base_url = service.url
    page = chromium.page()
    # Not signed in: sent to the login form, which comes back here once the token is right.
    page.goto(f"{base_url}/?source=")
    page.wait_for_url("**/login?next=*")
    page.fill("#login-token", "not-the-token")
    page.click("#login-submit")
    expect(page.locator("#login-error")).to_have_text("Those credentials are not right.")
    page.fill("#login-token", TOKEN)
    page.click("#login-submit")
    page.wait_for_url(f"{base_url}/?source=")
    assert TOKEN not in page.content()
    rows = page.locator("#tickets tbody tr")
    expect(rows).to_have_count(5)
    assert rows.first.get_attribute("data-ref") == "zendesk:102"
    # Colour by state, and the state written: a breached row carries the red bar, a paused
    # one the grey; each its badge.
    breached_bar = rows.first.locator("th").evaluate(
        "cell => getComputedStyle(cell).borderLeftColor"
    )
    assert breached_bar == "rgb(198, 40, 40)"
    assert rows.first.locator(".badge").inner_text() == "breached"
    paused = page.locator('tr[data-state="paused"] th')
    assert paused.evaluate("cell => getComputedStyle(cell).borderLeftColor") == "rgb(117, 117, 117)"
    # The live countdown ticks on the server's clock.
    countdown = page.locator('tr[data-ref="zendesk:103"] td.countdown')
    first = countdown.inner_text()
    assert first.startswith("in ")
    expect(countdown).not_to_have_text(first, timeout=3000)
    overdue = page.locator('tr[data-ref="zendesk:102"] td.countdown')
    assert overdue.inner_text().startswith("overdue ")
    # What each ticket is about and who has it; nobody assigned is flagged (issue 15.3).
    about = page.locator('tr[data-ref="zendesk:101"] th')
    expect(about.locator(".subject").first).to_have_text(SUBJECT)
    expect(about.locator(".requester")).to_have_text("Roger Wilco, Initech GmbH")
    expect(page.locator('tr[data-ref="zendesk:101"] td.assignee')).to_contain_text("Ana Agent")
    flag = page.locator('tr[data-ref="jira:10002"] .badge.unassigned')
    expect(flag).to_have_text("Unassigned")
    assert flag.evaluate("el => getComputedStyle(el).backgroundColor") == "rgb(168, 67, 0)"
    expect(page.locator("#updated")).to_have_text(re.compile(r"^updated \d\d:\d\d:\d\d$"))
    screenshot(page, "dashboard.png")

    # Filter by source: chosen, then applied (a select never submits by itself).
    page.select_option("#filter-source", "jira")
    page.click("#apply")
    page.wait_for_url(re.compile(r"/\?source=jira$"))
    expect(rows).to_have_count(2)
    expect(page.locator("#count")).to_have_text("2 open tickets match the filters")

    # A ticket's clocks as timelines.
    page.goto(f"{base_url}/")
    page.click('tr[data-ref="zendesk:101"] a')
    page.wait_for_url("**/tickets/zendesk/101")
    expect(page.locator("#ticket-subject")).to_have_text(SUBJECT)
    expect(page.locator("#ticket-people")).to_contain_text(
        "Requested by Roger Wilco (Initech GmbH). Group Tier 2. Assigned to Ana Agent"
    )
    card = page.locator("#clock-first_response")
    # Wednesday 15:00-17:00, and Friday from 09:00 to now once the service's clock has run.
    assert card.locator(".span.counted").count() in (1, 2)
    expect(card.locator(".span.ahead")).to_have_count(1)  # Friday 09:00-11:00
    expect(card.locator(".span.closed")).to_have_count(1)
    expect(card.locator(".marker.due")).to_have_count(1)
    assert "Thanksgiving" in card.inner_text()
    # Placed by the page's script (the CSP refuses style="" in the markup).
    width = card.locator(".span.counted").first.evaluate(
        "span => span.getBoundingClientRect().width"
    )
    assert width > 1
    screenshot(page, "ticket.png")

    page.click("#logout")
    page.wait_for_url("**/login")
    page.goto(f"{base_url}/")
    page.wait_for_url("**/login")


def test_each_filter_and_the_search_in_the_browser(service: Service, chromium: Browser) -> None:
    from playwright.sync_api import expect

    service.add(
        "106",
        assignee="ana@example.com",
        queue="Tier 2",
        shown={"subject": "Recordings missing since the upgrade", "organization": "Acme GmbH"},
    )
    page = chromium.page()
    log_in(page, service.url)
    assert len(listed(page)) == 6
    for select, value, expected in [
        ("#filter-state", "breached", ["zendesk:102", "zendesk:101"]),
        ("#filter-state", "paused", ["jira:10001"]),
        ("#filter-group", "OPS", ["jira:10002", "jira:10001"]),
        ("#filter-priority", "P1", ["zendesk:102"]),
        ("#filter-plan", "standard", ["zendesk:103", "jira:10002"]),
        ("#filter-assignee", "bo@example.com", ["zendesk:102"]),
        ("#filter-source", "jira", ["jira:10002", "jira:10001"]),
    ]:
        page.goto(f"{service.url}/")
        page.select_option(select, value)
        page.click("#apply")
        page.wait_for_url(re.compile(rf"[?&]{select[8:]}={re.escape(value).replace('@', '%40')}"))
        assert listed(page) == expected, (select, value)
        # The choice is still shown after the reload, so the next filter adds to it.
        assert page.eval_on_selector(select, "s => s.value") == value
    # Unassigned, added to the group already chosen.
    page.goto(f"{service.url}/?group=OPS")
    page.check("#filter-unassigned")
    page.click("#apply")
    page.wait_for_url(re.compile(r"[?&]unassigned=1"))
    assert listed(page) == ["jira:10002"]
    assert "group=OPS" in page.url
    # The search, by subject and organization, then by the assignee's address; Enter submits.
    page.goto(f"{service.url}/")
    page.fill("#filter-q", "acme recordings")
    page.press("#filter-q", "Enter")
    page.wait_for_url(re.compile(r"/\?q=acme\+recordings$"))
    assert listed(page) == ["zendesk:106"]
    expect(page.locator('tr[data-ref="zendesk:106"] th')).to_contain_text(
        "Recordings missing since the upgrade"
    )
    page.fill("#filter-q", "ana@example.com")
    page.press("#filter-q", "Enter")
    page.wait_for_url(re.compile(r"/\?q=ana%40example\.com$"))
    assert listed(page) == ["zendesk:101", "zendesk:106", "jira:10001"]
    page.fill("#filter-q", "no such thing")
    page.press("#filter-q", "Enter")
    page.wait_for_url(re.compile(r"/\?q=no\+such\+thing$"))
    expect(page.locator("#tickets tbody")).to_have_text("No open ticket matches these filters.")
    page.click("#clear")
    page.wait_for_url(f"{service.url}/")
    assert len(listed(page)) == 6


NO_SIDEWAYS_SCROLL = """() => {
  const root = document.documentElement;
  // The elements sticking out on the right, to say what to fix.
  const wide = Array.from(document.querySelectorAll('body *'))
    .filter(el => el.getBoundingClientRect().right > root.clientWidth + 0.5
      || (el.scrollWidth > el.clientWidth + 1 && getComputedStyle(el).overflowX === 'visible'
          && el.clientWidth > 0))
    .slice(0, 5)
    .map(el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + '.' + el.className);
  return {
    scroll: root.scrollWidth, client: root.clientWidth, body: document.body.scrollWidth, wide,
  };
}"""


def test_on_a_phone_the_list_is_cards_and_the_page_never_scrolls_sideways(
    service: Service, chromium: Browser
) -> None:
    # Long words a phone must wrap: an address, a subject, a group name.
    service.add(
        "107",
        assignee="firstname.lastname.with.a.long.address@subsidiary.example.com",
        queue="Second-line-infrastructure-escalations",
        shown={"subject": "Everything-is-down-after-the-weekend-maintenance-window-again"},
    )
    page = chromium.page(PHONE)
    log_in(page, service.url)
    for path in ("/", "/?state=breached", "/tickets/zendesk/101", "/tickets/jira/10001"):
        page.goto(f"{service.url}{path}")
        width = page.evaluate(NO_SIDEWAYS_SCROLL)
        assert width["scroll"] <= width["client"] == PHONE["width"], (path, width)
        assert width["body"] <= PHONE["width"], (path, width)
    page.goto(f"{service.url}/")
    assert len(listed(page)) == 6
    card = page.locator('tr[data-ref="zendesk:107"]')
    assert card.evaluate("row => getComputedStyle(row).display") == "block"
    box = card.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    # Each value is labelled by its column, shown before it.
    label = card.locator('td[data-label="Assignee"]').evaluate(
        "cell => getComputedStyle(cell, '::before').content"
    )
    assert label == '"Assignee"'
    # The cards keep the table's roles for screen readers.
    assert card.get_attribute("role") == "row"
    assert page.locator("#tickets thead").evaluate("h => h.getBoundingClientRect().width") <= 1
    screenshot(page, "dashboard-phone.png")
    page.goto(f"{service.url}/tickets/zendesk/101")
    screenshot(page, "ticket-phone.png")


FOCUSED = """() => {
  const el = document.activeElement;
  const style = getComputedStyle(el);
  const row = el.closest('tr');
  return {
    tag: el.tagName.toLowerCase(), id: el.id, href: el.getAttribute('href'),
    ref: row ? row.dataset.ref : null,
    index: Array.prototype.indexOf.call(document.querySelectorAll('*'), el),
    outline: style.outlineStyle, width: parseFloat(style.outlineWidth),
    color: style.outlineColor, top: el.getBoundingClientRect().top,
  };
}"""

FOCUSABLE = """() => Array.from(document.querySelectorAll(
  'a[href], button, input:not([type=hidden]), select, summary, [tabindex="0"]'
)).filter(el => el.checkVisibility()).length"""
"""How many controls a reader can reach (not the ones inside a closed <details>)."""


def tab_to(page: Any, wanted: str, limit: int = 40) -> list[dict[str, Any]]:
    """Press Tab until the element matching ``wanted`` has the focus; what got it on the way."""
    seen = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        seen.append(page.evaluate(FOCUSED))
        if page.evaluate("s => document.activeElement.matches(s)", wanted):
            return seen
    raise AssertionError(f"Tab never reached {wanted}: {seen}")


def test_the_dashboard_works_with_the_keyboard_alone(service: Service, chromium: Browser) -> None:
    from playwright.sync_api import expect

    page = chromium.page()
    page.goto(f"{service.url}/")
    page.wait_for_url("**/login")
    # The token field takes the focus (autofocus runs at the browser's next rendering
    # step, after "load": wait for it rather than type into nothing); Enter submits.
    expect(page.locator("#login-token")).to_be_focused()
    page.keyboard.type(TOKEN)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{service.url}/")

    # First Tab: the skip link, shown while it has the focus; Enter moves to the content.
    page.keyboard.press("Tab")
    skip = page.evaluate(FOCUSED)
    assert skip["href"] == "#main" and skip["top"] >= 0, skip
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.activeElement.id") == "main"

    # Every control is reached by Tab, each with a visible focus ring that stands out.
    for path in ("/", "/tickets/zendesk/101"):
        page.goto(f"{service.url}{path}")
        everything = page.evaluate(FOCUSABLE)
        reached = []
        for _ in range(everything):
            page.keyboard.press("Tab")
            focused = page.evaluate(FOCUSED)
            assert focused["outline"] != "none" and focused["width"] >= 2, (path, focused)
            assert page.evaluate(RING) >= 3, focused
            reached.append(focused["index"])
        assert len(set(reached)) == everything >= 7, (path, reached)

    # The state filter: reached by Tab, changed by typing, applied with Enter on the button.
    page.goto(f"{service.url}/")
    tab_to(page, "#filter-state")
    page.keyboard.type("p")  # the first state starting with p: paused
    assert page.eval_on_selector("#filter-state", "s => s.value") == "paused"
    ARTIFACTS.mkdir(exist_ok=True)  # the focus ring on the state filter
    page.screenshot(
        path=str(ARTIFACTS / "dashboard-keyboard.png"),
        clip={"x": 0, "y": 0, "width": 1280, "height": 260},
    )
    assert page.url == f"{service.url}/"  # choosing does not reload the page
    tab_to(page, "#apply")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/\?state=paused$"))
    assert listed(page) == ["jira:10001"]
    # Space ticks the Unassigned box (no paused ticket is unassigned).
    tab_to(page, "#filter-unassigned")
    page.keyboard.press("Space")
    tab_to(page, "#apply")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"[?&]unassigned=1"))
    expect(page.locator("#tickets tbody")).to_have_text("No open ticket matches these filters.")

    # Enter on a ticket's link opens it; there Enter opens the list of intervals.
    page.goto(f"{service.url}/?state=breached")
    tab_to(page, 'tr[data-ref="zendesk:101"] a')
    page.keyboard.press("Enter")
    page.wait_for_url("**/tickets/zendesk/101")
    tab_to(page, "#clock-first_response summary")
    page.keyboard.press("Enter")
    assert page.eval_on_selector("#clock-first_response details", "d => d.open") is True


COLOURS = """
  // WCAG 2.x relative luminance and contrast, over the colours the browser computed.
  const parse = c => {
    const m = c.match(/[\\d.]+/g).map(Number);
    return {r: m[0], g: m[1], b: m[2], a: m.length > 3 ? m[3] : 1};
  };
  const over = (top, under) => ({
    r: top.r * top.a + under.r * (1 - top.a), g: top.g * top.a + under.g * (1 - top.a),
    b: top.b * top.a + under.b * (1 - top.a), a: 1,
  });
  const background = el => {
    // The ancestors' backgrounds under the element's centre (a label set beside a 2 px
    // marker line is read against the card, not against the line's colour).
    const box = el.getBoundingClientRect();
    const x = box.left + box.width / 2, y = box.top + box.height / 2;
    const layers = [];
    for (let node = el; node; node = node.parentElement) {
      const area = node.getBoundingClientRect();
      if (node !== document.documentElement && node !== document.body
          && (x < area.left || x > area.right || y < area.top || y > area.bottom)) { continue; }
      const colour = parse(getComputedStyle(node).backgroundColor);
      if (colour.a > 0) { layers.push(colour); if (colour.a === 1) { break; } }
    }
    const white = {r: 255, g: 255, b: 255, a: 1};
    return layers.reverse().reduce((under, top) => over(top, under), white);
  };
  const channel = v => {
    v /= 255;
    return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
  };
  const luminance = c => 0.2126 * channel(c.r) + 0.7152 * channel(c.g) + 0.0722 * channel(c.b);
  const ratio = (a, b) => {
    const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
    return (hi + 0.05) / (lo + 0.05);
  };
"""

CONTRAST = (
    "() => {"
    + COLOURS
    + """
  // Every state's badge too, including the ones no ticket shows at the moment.
  const sample = (className, text) => {
    const made = document.createElement('span');
    made.className = className;
    made.textContent = text;
    return made;
  };
  const samples = document.createElement('p');
  for (const state of ['breached', 'at_risk', 'running', 'paused', 'met', 'none']) {
    samples.appendChild(sample('badge ' + state, state));
  }
  samples.append(sample('countdown overdue', 'overdue'), sample('error', 'error'));
  document.querySelector('main').appendChild(samples);
  const measured = [];
  for (const el of document.querySelectorAll('body *')) {
    const own = Array.from(el.childNodes).some(n => n.nodeType === 3 && n.textContent.trim());
    const unseen = el.closest('.visually-hidden, script, style, noscript');
    if (!own || !el.getClientRects().length || unseen) { continue; }
    const style = getComputedStyle(el);
    if (style.visibility === 'hidden') { continue; }
    const bg = background(el);
    const fg = over(parse(style.color), bg);
    measured.push({
      text: el.textContent.trim().slice(0, 40), tag: el.tagName, colour: style.color,
      ratio: ratio(fg, bg),
    });
  }
  samples.remove();
  return measured;
}"""
)

RING = (
    "() => {"
    + COLOURS
    + """
  // The focus indicator against what surrounds the focused element (3:1, WCAG 1.4.11).
  const el = document.activeElement;
  return ratio(parse(getComputedStyle(el).outlineColor), background(el.parentElement));
}"""
)


def test_every_text_colour_has_a_contrast_of_at_least_4_5_to_1(
    service: Service, chromium: Browser
) -> None:
    # An at-risk ticket: P1, first response within the hour, 50 minutes gone.
    service.add("108", priority="P1", channel="phone", created_at=NOW - timedelta(minutes=50))
    for viewport in (DESKTOP, PHONE):
        page = chromium.page(viewport)
        paths = ["/login", "/", "/?state=at_risk", "/?q=nothing", "/tickets/zendesk/101"]
        for number, path in enumerate(paths):
            if number == 1:
                log_in(page, service.url)
            page.goto(f"{service.url}{path}")
            measured = page.evaluate(CONTRAST)
            assert len(measured) > 10, (path, measured)
            low = [m for m in measured if m["ratio"] < 4.5]
            assert low == [], (viewport, path, low)
            colours = {m["colour"] for m in measured}
            assert len(colours) >= 4, colours  # the badges, the muted text, the links...
        page.goto(f"{service.url}/?state=at_risk")
        assert listed(page) == ["zendesk:108"]  # its badge was measured


SHOW = """state => {
  // As when the reader switches to another tab (hidden) and back (visible).
  Object.defineProperty(document, 'visibilityState', {value: state, configurable: true});
  document.dispatchEvent(new Event('visibilitychange'));
}"""


def test_the_list_refreshes_itself_keeping_filters_scroll_and_focus(
    service: Service, chromium: Browser
) -> None:
    from playwright.sync_api import expect

    for number in range(120, 128):  # a list longer than the window
        service.add(str(number))
    page = chromium.page({"width": 1280, "height": 400})
    fetches: list[str] = []
    page.on("request", lambda request: fetches.append(request.url))
    log_in(page, service.url, "/?state=running")
    before = listed(page)
    assert len(before) == 10
    page.focus('tr[data-ref="jira:10002"] a')  # (scrolls it into view)
    scrolled = page.evaluate(
        """() => { window.notReloaded = true;
                   window.scrollTo(0, Math.floor((document.body.scrollHeight - innerHeight) / 2));
                   return window.scrollY; }"""
    )
    assert scrolled > 50

    # A ticket stored after the page loaded appears; a breached one the filter excludes does not.
    service.add("110", plan="standard")
    service.add("111", priority="P1", created_at=NOW - timedelta(hours=3))
    expect(page.locator('tr[data-ref="zendesk:110"]')).to_have_count(1, timeout=8000)
    after = listed(page)
    assert sorted(after) == sorted([*before, "zendesk:110"])
    states = page.eval_on_selector_all(
        "#tickets tbody tr", "rows => rows.map(r => r.dataset.state)"
    )
    assert set(states) == {"running"}
    assert page.url == f"{service.url}/?state=running"
    assert page.eval_on_selector("#filter-state", "s => s.value") == "running"
    assert page.evaluate("() => window.notReloaded === true && window.scrollY") == scrolled
    focused = page.evaluate(FOCUSED)
    assert (focused["tag"], focused["ref"]) == ("a", "jira:10002")
    expect(page.locator("#count")).to_have_text("11 open tickets match the filters")
    expect(page.locator("#updated")).to_have_text(re.compile(r"^updated \d\d:\d\d:\d\d$"))

    # A hidden tab asks nothing; shown again, it refreshes at once.
    page.evaluate(SHOW, "hidden")
    time.sleep(0.5)  # a fetch already under way ends
    fetches.clear()
    service.add("112")
    time.sleep(REFRESH_SECONDS * 2.5)
    assert fetches == [] and "zendesk:112" not in listed(page)
    page.evaluate(SHOW, "visible")
    expect(page.locator('tr[data-ref="zendesk:112"]')).to_have_count(1, timeout=1500)

    # Switched off: nothing more is fetched, the page says so, and it stays off on reload.
    page.uncheck("#auto-refresh")
    expect(page.locator("#updated")).to_have_text("auto-refresh off: reload the page for new data")
    time.sleep(0.5)
    fetches.clear()
    service.add("113")
    time.sleep(REFRESH_SECONDS * 2.5)
    assert fetches == [] and "zendesk:113" not in listed(page)
    page.reload()
    assert "zendesk:113" in listed(page)
    assert page.is_checked("#auto-refresh") is False
    page.check("#auto-refresh")
    expect(page.locator("#updated")).to_have_text(re.compile(r"^updated "), timeout=3000)
    assert page.evaluate("() => window.localStorage.getItem('slabot.autoRefresh')") == "on"


REPORT_PATH = "/reports?period=2026-11&tz=America%2FLos_Angeles"


def test_the_reports_page_draws_its_charts_on_a_desktop_and_a_phone(
    service: Service, chromium: Browser
) -> None:
    """The Reports page under the CSP: its SVG charts drawn (a line per priority, a bar per
    target), its tables read, and a 375 px phone never scrolling sideways."""
    for viewport, name in ((DESKTOP, "reports.png"), (PHONE, "reports-phone.png")):
        page = chromium.page(viewport)
        log_in(page, service.url, "/")
        page.click("#nav-reports")
        page.wait_for_url(f"{service.url}/reports")
        page.goto(f"{service.url}{REPORT_PATH}")
        priorities = page.eval_on_selector_all(
            "#attainment-table tbody tr[data-priority]", "rows => rows.map(r => r.dataset.priority)"
        )
        assert priorities and priorities == sorted(priorities)
        chart = page.locator("#trend-chart").bounding_box()
        assert chart is not None and 0 < chart["width"] <= viewport["width"]
        lines = page.eval_on_selector_all(
            "#trend-chart polyline", "ls => ls.map(l => [l.dataset.priority, l.getTotalLength()])"
        )
        assert {priority for priority, _ in lines} <= set(priorities)
        assert all(length >= 0 for _, length in lines)
        bars = page.eval_on_selector_all(
            "#breach-chart rect.breached", "rs => rs.map(r => r.getBBox().width)"
        )
        assert bars and max(bars) > 0  # the breached P1 clocks of zendesk:102
        # The credits section is there, saying why there is nothing to credit.
        assert page.locator("#no-credits").is_visible()
        width = page.evaluate(NO_SIDEWAYS_SCROLL)
        assert width["scroll"] <= width["client"] == viewport["width"], width
        screenshot(page, name)


TIMES = "els => els.map(el => [el.dateTime, el.textContent])"


def on_the_clocks_of(zone: str, times: list[list[str]]) -> list[str]:
    """The ``<time>`` texts that do not read their instant's wall time in ``zone``."""
    wrong = []
    for stamp, text in times:
        wall = datetime.fromisoformat(stamp).astimezone(ZoneInfo(zone))
        if not text.startswith(wall.strftime("%a %d %b %Y %H:%M ")):
            wrong.append(f"{stamp}: {text}")
    return wrong


@pytest.mark.parametrize(
    ("zone", "paused_since"),
    [
        # Waiting on the customer again since Wednesday 16:00 in Los Angeles (00:00 UTC).
        ("America/New_York", "Wed 25 Nov 2026 19:00 EST"),
        ("Asia/Kolkata", "Thu 26 Nov 2026 05:30 "),
    ],
)
def test_every_time_is_shown_in_the_browsers_zone_and_the_refresh_keeps_it(
    service: Service, chromium: Browser, zone: str, paused_since: str
) -> None:
    """Issue 15.5: one zone per page, the reader's. The server is told another zone (a
    cookie of Europe/Paris, as a reader who travelled would have) and writes the page in it;
    the page's script shows every instant in the browser's zone all the same, and so the
    rows each refresh swaps in."""
    from playwright.sync_api import expect

    page = chromium.page(timezone_id=zone)
    log_in(page, service.url)
    # The zone's name as the browser says it: Chromium's ICU says Asia/Calcutta, an alias
    # of Asia/Kolkata that Python knows too.
    named = page.evaluate("() => Intl.DateTimeFormat().resolvedOptions().timeZone")
    assert ZoneInfo(named).utcoffset(NOW) == ZoneInfo(zone).utcoffset(NOW)
    expect(page.locator("#page-zone")).to_have_text(named)
    expect(page.locator("#page-zone-note")).to_have_text(f"Times in {named}")
    due = page.locator('tr[data-ref="zendesk:101"] td[data-label="Due"] time')
    stamp = due.get_attribute("datetime")
    assert stamp is not None and stamp.endswith("Z")
    wall = datetime.fromisoformat(stamp).astimezone(ZoneInfo(zone))
    assert due.inner_text().startswith(wall.strftime("%a %d %b %Y %H:%M "))
    times = page.eval_on_selector_all("time", TIMES)
    assert len(times) >= 5 and on_the_clocks_of(zone, times) == []
    clock = page.locator("#server-time time")
    assert on_the_clocks_of(zone, [[clock.get_attribute("datetime"), clock.inner_text()]]) == []

    # The server now writes in Paris: the page shows the browser's zone, and so the new rows.
    context = page.context
    paris = {"name": "slabot_tz", "value": "Europe/Paris", "url": service.url}
    context.add_cookies([paris])
    service.add("130")
    expect(page.locator('tr[data-ref="zendesk:130"]')).to_have_count(1, timeout=8000)
    times = page.eval_on_selector_all("#tickets time", TIMES)
    assert len(times) >= 5 and on_the_clocks_of(zone, times) == []
    assert page.locator("#tickets time", has_text="CET").count() == 0

    # The ticket page, written in Paris by the server: its pauses and timeline in the
    # browser's zone.
    context.add_cookies([paris])
    answer = page.goto(f"{service.url}/tickets/jira/10001")
    assert answer is not None and 'id="page-zone">Europe/Paris</b>' in answer.text()
    expect(page.locator("#page-zone")).to_have_text(named)
    pauses = page.locator("#clock-restoration p.pauses")
    expect(pauses).to_contain_text(f"; {paused_since}")
    times = page.eval_on_selector_all("time", TIMES)
    assert len(times) >= 10 and on_the_clocks_of(zone, times) == []
    # A stretch of the timeline says when on hover, in the same zone.
    stretch = page.locator("#clock-next_update .span.pause").last
    tip = stretch.locator(".tip")
    expect(tip).to_be_hidden()
    stretch.hover()
    expect(tip).to_be_visible()
    expect(tip).to_contain_text(f"waiting on the customer: {paused_since}")
    # The script told the server the browser's zone: the next pages come in it already.
    cookies = {c["name"]: c["value"] for c in context.cookies()}
    assert cookies["slabot_tz"] == named
    again = page.goto(f"{service.url}/")
    assert again is not None and f'id="page-zone">{named}</b>' in again.text()


def test_without_javascript_the_times_are_in_the_configured_zone_and_say_so(
    service: Service, chromium: Browser
) -> None:
    page = chromium.page(timezone_id="Asia/Kolkata", java_script_enabled=False)
    log_in(page, service.url)  # the login form posts without a script
    assert page.locator("#page-zone-note").inner_text() == "Times in UTC"
    times = page.eval_on_selector_all("time", TIMES)
    assert len(times) >= 5 and on_the_clocks_of("UTC", times) == []
    page.goto(f"{service.url}/tickets/jira/10001")
    assert page.locator("#clock-restoration p.pauses").inner_text() == (
        "Paused: Wed 25 Nov 2026 23:00 UTC to Wed 25 Nov 2026 23:45 UTC; "
        "Thu 26 Nov 2026 00:00 UTC to now."
    )
