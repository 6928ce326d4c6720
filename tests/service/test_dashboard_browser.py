"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright.

The page is served by uvicorn on an ephemeral loopback port, with a dashboard token. The test
is sent to the login form, logs in with the token, reads the rows, their colours and the live
countdown, filters by source, opens a ticket's timeline, logs out, and keeps screenshots
under artifacts/ (git-ignored). Everything runs under the service's Content-Security-Policy:
any violation the browser reports fails the test. Chromium comes from Debian's ``chromium``
package (``.ci/run`` installs it when missing); Playwright never downloads a browser here.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from conftest import Clock
from dashboard_support import NOW, SUBJECT, load

from slabot.service.app import create_app
from slabot.service.runtime import build_runtime
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


class RunningClock(Clock):
    """A fixed instant that the page's countdown advances at the real rate."""

    rate = 1.0


@pytest.fixture
def base_url(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "empty.yaml").write_text("", encoding="utf-8")
    settings = load_settings(
        {"DATABASE_URL": f"sqlite:///{tmp_path / 'board.db'}", "SLABOT_DASHBOARD_TOKEN": TOKEN},
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
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        runtime.close()


@pytest.fixture
def page() -> Iterator[object]:
    if not shutil.which(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium package")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # Playwright gives the browser a new, empty profile of its own.
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            yield context.new_page()
        finally:
            browser.close()


def test_the_dashboard_in_chromium(base_url: str, page: object) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    refused: list[str] = []
    page.on(
        "console",
        lambda message: (
            refused.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
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
    # Colour by state: a breached row carries the red bar, a paused one the grey.
    breached_bar = rows.first.locator("td").first.evaluate(
        "cell => getComputedStyle(cell).borderLeftColor"
    )
    assert breached_bar == "rgb(198, 40, 40)"
    paused = page.locator('tr[data-state="paused"] td').first
    assert paused.evaluate("cell => getComputedStyle(cell).borderLeftColor") == "rgb(117, 117, 117)"
    # The live countdown ticks on the server's clock.
    countdown = page.locator('tr[data-ref="zendesk:103"] td.countdown')
    first = countdown.inner_text()
    assert first.startswith("in ")
    expect(countdown).not_to_have_text(first, timeout=3000)
    overdue = page.locator('tr[data-ref="zendesk:102"] td.countdown')
    assert overdue.inner_text().startswith("overdue ")
    # What each ticket is about and who has it; nobody assigned is flagged (issue 15.3).
    about = page.locator('tr[data-ref="zendesk:101"] td').first
    expect(about.locator(".subject").first).to_have_text(SUBJECT)
    expect(about.locator(".requester")).to_have_text("Roger Wilco, Initech GmbH")
    expect(page.locator('tr[data-ref="zendesk:101"] td.assignee')).to_contain_text("Ana Agent")
    flag = page.locator('tr[data-ref="jira:10002"] .badge.unassigned')
    expect(flag).to_have_text("Unassigned")
    assert flag.evaluate("el => getComputedStyle(el).backgroundColor") == "rgb(168, 67, 0)"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

    # Filter by source: the form submits itself on change.
    page.select_option("#filter-source", "jira")
    page.wait_for_url("**/?source=jira*")
    expect(rows).to_have_count(2)
    expect(page.locator("#count")).to_have_text("2 of 5 open tickets")

    # A ticket's clocks as timelines.
    page.goto(f"{base_url}/")
    page.click('tr[data-ref="zendesk:101"] a')
    page.wait_for_url("**/tickets/zendesk/101")
    expect(page.locator("#ticket-subject")).to_have_text(SUBJECT)
    expect(page.locator("#ticket-people")).to_contain_text(
        "Requested by Roger Wilco (Initech GmbH). Group Tier 2. Assigned to Ana Agent"
    )
    card = page.locator("#clock-first_response")
    expect(card.locator(".span.counted")).to_have_count(1)  # Wednesday 15:00-17:00
    expect(card.locator(".span.ahead")).to_have_count(1)  # Friday 09:00-11:00
    expect(card.locator(".span.closed")).to_have_count(1)
    expect(card.locator(".marker.due")).to_have_count(1)
    assert "Thanksgiving" in card.inner_text()
    # Placed by the page's script (the CSP refuses style="" in the markup).
    width = card.locator(".span.counted").evaluate("span => span.getBoundingClientRect().width")
    assert width > 1
    page.screenshot(path=str(ARTIFACTS / "ticket.png"), full_page=True)

    page.click("#logout")
    page.wait_for_url("**/login")
    page.goto(f"{base_url}/")
    page.wait_for_url("**/login")
    assert refused == [], refused
