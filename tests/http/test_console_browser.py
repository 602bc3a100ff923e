"""The operator's console in a real headless Chromium (Debian's, driven by Playwright): log
in, watch a run arrive live, fire, pause and resume with the buttons, correct a ticket on
the review page, log out; every page at a phone's width; a screenshot of each page under
``var/screenshots/``.

The browser comes from ``scripts/browser-test-setup.sh`` (exit 77: it cannot be installed
here, and every test skips with its reason) and Playwright from the ``test`` extra; no
``playwright install`` (its download fails on a closed network). Controls are found by their
roles and accessible names, so a control without a name fails the test that uses it.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from tests.http.test_console import ADMIN_PASSWORD, Console, console

from open_ticket_ai.tickets.adapters.sqlite import SqliteParams, SqliteTicketSystem

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

__all__ = ["console"]  # the fixture, from the route tests: a real orchestrator on 127.0.0.1

# The browser install (when the set-up script has to make it) happens in the first test's
# set-up; everything else is bounded by Playwright's own timeouts (below).
pytestmark = pytest.mark.timeout(300)

REPO = Path(__file__).resolve().parents[2]
SETUP = REPO / "scripts" / "browser-test-setup.sh"
SCREENSHOTS = REPO / "var" / "screenshots"
SETUP_TIMEOUT = 240.0
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT_MS = 5_000
"""What an ``expect`` waits at most (Playwright's default, written out)."""
ACTION_MS = 10_000
"""What a click, a fill or a navigation waits at most."""
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def chromium() -> str:
    """The browser's path; skips the module when Playwright or the browser is missing."""
    try:
        import playwright.async_api  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"playwright cannot be imported ({exc}): install the project's test extra")
    try:
        done = subprocess.run(
            [str(SETUP)], capture_output=True, text=True, timeout=SETUP_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{SETUP.name} did not finish within {SETUP_TIMEOUT:.0f} s")
    reason = (done.stderr.strip().splitlines() or [""])[-1]
    if done.returncode == 77:
        pytest.skip(reason or f"{SETUP.name} cannot install chromium here")
    assert done.returncode == 0, f"{SETUP.name} failed ({done.returncode}):\n{done.stderr}"
    path = done.stdout.strip().splitlines()[-1]
    assert Path(path).is_file(), f"{SETUP.name} printed {path!r}, which is not a file"
    return path


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Browser]:
    from playwright.async_api import async_playwright

    async with async_playwright() as driver:
        launched = await driver.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
def js_errors() -> list[str]:
    """The uncaught script errors of the test's pages."""
    return []


async def new_page(browser: Browser, js_errors: list[str], **context: Any) -> Page:
    from playwright.async_api import expect

    expect.set_options(timeout=WAIT_MS)
    page = await (await browser.new_context(**context)).new_page()
    page.set_default_timeout(ACTION_MS)
    page.on("pageerror", lambda error: js_errors.append(str(error)))
    return page


@pytest.fixture
async def page(browser: Browser, js_errors: list[str]) -> Page:
    return await new_page(browser, js_errors)


async def log_in(page: Page, url: str, user: str = "admin", password: str = ADMIN_PASSWORD) -> None:
    from playwright.async_api import expect

    await page.goto(f"{url}/login")
    await page.get_by_label("User name").fill(user)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("button", name=f"Log out {user}")).to_be_visible()


async def live(page: Page) -> None:
    """Wait until the page's event stream is open (a run ending before that is not heard)."""
    from playwright.async_api import expect

    await expect(page.locator("#live-status")).to_have_text("live")


async def reload_until(page: Page, locator_of: Any, text: str, within: float = 5.0) -> None:
    """Reload until ``locator_of(page)`` has ``text``, as a person would: the ledger is
    written in batches, a fraction of a second after the run."""
    from playwright.async_api import expect

    deadline = time.monotonic() + within
    while True:
        try:
            await expect(locator_of(page)).to_have_text(text, timeout=250)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await page.reload()


async def queue_of(console: Console) -> str | None:
    desk = SqliteTicketSystem(SqliteParams(path=str(console.desk)), id="desk")
    await desk.open()
    try:
        return (await desk.get(console.ticket_id)).queue
    finally:
        await desk.close()


def screenshot_path(name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS / f"{name}.png"


# -- scenarios -------------------------------------------------------------------------------


async def test_a_login_leads_to_the_page_asked_for(
    console: Console, page: Page, js_errors: list[str]
) -> None:
    from playwright.async_api import expect

    await page.goto(f"{console.url}/runs")
    await expect(page).to_have_url(f"{console.url}/login?next=/runs")
    await expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    await page.get_by_label("User name").fill("admin")
    await page.get_by_label("Password").fill("not-the-password")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("alert")).to_have_text("Wrong user name or password.")
    await expect(page.get_by_label("Password")).to_have_value("")
    await page.get_by_label("User name").fill("admin")
    await page.get_by_label("Password").fill(ADMIN_PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await expect(page).to_have_url(f"{console.url}/runs")
    await expect(page.get_by_role("heading", name="Runs")).to_be_visible()
    await expect(page.get_by_role("link", name="route-1")).to_be_visible()
    assert js_errors == []


async def test_a_run_appears_live_without_a_reload(
    console: Console, page: Page, js_errors: list[str]
) -> None:
    from playwright.async_api import expect

    await log_in(page, console.url)
    await expect(page).to_have_url(f"{console.url}/")
    await live(page)
    await page.evaluate("window.notReloaded = true")
    runs = page.get_by_role("list", name="Runs as they end").get_by_role("listitem")
    await expect(runs).to_have_count(0)
    fired = console.orchestrator.fire_runner("quick")
    assert not fired.refused, fired
    await expect(runs).to_have_count(1)
    await expect(runs.first).to_contain_text("succeeded")
    row = page.get_by_role("row", name="quick")
    await expect(row.locator(".last")).to_contain_text("succeeded just now")
    assert await page.evaluate("window.notReloaded") is True
    console.orchestrator.fire_runner("quick")
    await expect(runs).to_have_count(2)
    assert js_errors == []


async def test_the_fire_button_runs_the_runner_and_the_run_is_counted(
    console: Console, page: Page
) -> None:
    from playwright.async_api import expect

    runner = console.orchestrator.runners["quick"]
    await log_in(page, console.url)
    row = page.get_by_role("row", name="quick")
    await expect(row.locator(".counts")).to_have_text("0 runs, 0 failed")
    await row.get_by_role("button", name="Fire quick now").click()
    await expect(page).to_have_url(f"{console.url}/")
    await reload_until(
        page, lambda p: p.get_by_role("row", name="quick").locator(".counts"), "1 runs, 0 failed"
    )
    assert runner.stats.runs == 1
    await expect(row.locator(".last .badge")).to_have_text("succeeded")
    await (
        page.get_by_role("navigation", name="Console pages")
        .get_by_role("link", name="Runs")
        .click()
    )
    await expect(page.get_by_role("row").filter(has_text="manual")).to_have_count(1)


async def test_pause_and_resume_with_the_buttons(
    console: Console, page: Page, js_errors: list[str]
) -> None:
    from playwright.async_api import expect

    runner = console.orchestrator.runners["quick"]
    await log_in(page, console.url)
    row = page.get_by_role("row", name="quick")
    await expect(row.locator(".state")).to_have_text("idle")
    await row.get_by_role("button", name="Pause quick").click()
    await expect(row.locator(".state")).to_have_text("paused")
    await expect(row.get_by_role("button", name="Resume quick")).to_be_visible()
    await expect(row.get_by_role("button", name="Pause quick")).to_have_count(0)
    assert runner.paused
    assert console.orchestrator.fire_runner("quick").refused
    await row.get_by_role("button", name="Resume quick").click()
    await expect(row.locator(".state")).to_have_text("idle")
    await expect(row.get_by_role("button", name="Pause quick")).to_be_visible()
    assert not runner.paused
    assert js_errors == []


async def test_a_pause_from_elsewhere_shows_live(
    console: Console, page: Page, js_errors: list[str]
) -> None:
    from playwright.async_api import expect

    await log_in(page, console.url)
    await live(page)
    row = page.get_by_role("row", name="quick")
    assert console.orchestrator.pause("quick", by="someone-else")
    await expect(row.locator(".state")).to_have_text("paused")
    # The row offers what a reload would: Resume instead of Pause, and it works.
    await expect(row.get_by_role("button", name="Pause quick")).to_have_count(0)
    await row.get_by_role("button", name="Resume quick").click()
    await expect(row.locator(".state")).to_have_text("idle")
    assert not console.orchestrator.runners["quick"].paused
    assert console.orchestrator.pause("quick", by="someone-else")
    await expect(row.locator(".state")).to_have_text("paused")
    assert console.orchestrator.resume("quick", by="someone-else")
    await expect(row.locator(".state")).to_have_text("idle")
    await expect(row.get_by_role("button", name="Pause quick")).to_be_visible()
    assert js_errors == []


async def correct_on_the_review_page(console: Console, page: Page, label: str) -> None:
    """Log in, open Review from the navigation, pick ``label`` (one of the model's top
    labels) or type it (any other) and press Set."""
    from playwright.async_api import expect

    await log_in(page, console.url)
    await (
        page.get_by_role("navigation", name="Console pages")
        .get_by_role("link", name="Review")
        .click()
    )
    await expect(page.get_by_role("heading", name="Review")).to_be_visible()
    ticket = console.ticket_id
    choice = page.get_by_label(f"Label for ticket {ticket}", exact=True)
    await expect(choice).to_have_value("Billing")
    if label in ("Billing", "IT Support"):
        await choice.select_option(label)
    else:
        await page.get_by_label("or another label").fill(label)
    await page.get_by_role("button", name=f"Set the label of ticket {ticket}").click()


async def test_a_low_confidence_ticket_is_corrected_on_the_review_page(
    console: Console, page: Page, js_errors: list[str]
) -> None:
    from playwright.async_api import expect

    assert await queue_of(console) == "Review"
    await correct_on_the_review_page(console, page, "IT Support")
    await expect(page.get_by_role("status")).to_have_text(
        f"ticket {console.ticket_id}: queue set to IT Support"
    )
    assert await queue_of(console) == "IT Support"
    await reload_until(page, lambda p: p.locator("#review tbody"), "Nothing waits for review.")
    # The correction is run console-1 of the runner console (the Tickets page leaves the
    # console's own runs out): on the Runs page, and its page names the change.
    await (
        page.get_by_role("navigation", name="Console pages")
        .get_by_role("link", name="Runs")
        .click()
    )
    await page.get_by_role("link", name="console-1").click()
    await expect(page.get_by_role("heading", name="Run console-1")).to_be_visible()
    await expect(page.get_by_role("main")).to_contain_text(
        f"update ticket {console.ticket_id}: queue 'Review' -> 'IT Support'"
    )
    assert js_errors == []


async def test_right_after_a_correction_nothing_waits(console: Console, page: Page) -> None:
    from playwright.async_api import expect

    await correct_on_the_review_page(console, page, "IT Support")
    await expect(page.get_by_role("status")).to_be_visible()
    await expect(page.locator("#review tbody")).to_have_text(
        "Nothing waits for review.", timeout=1_000
    )


async def test_a_typed_label_is_confirmed_as_typed(console: Console, page: Page) -> None:
    from playwright.async_api import expect

    await correct_on_the_review_page(console, page, "R&D #2+")
    await expect(page.get_by_role("status")).to_be_visible()
    assert await queue_of(console) == "R&D #2+"
    await expect(page.get_by_role("status")).to_have_text(
        f"ticket {console.ticket_id}: queue set to R&D #2+", timeout=1_000
    )


async def test_logging_out_ends_the_session(
    console: Console, page: Page, js_errors: list[str]
) -> None:
    from playwright.async_api import expect

    await log_in(page, console.url)
    await page.get_by_role("button", name="Log out admin").click()
    await expect(page).to_have_url(f"{console.url}/login")
    await expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    await expect(page.get_by_role("button", name="Log out admin")).to_have_count(0)
    await page.goto(f"{console.url}/tickets")
    await expect(page).to_have_url(f"{console.url}/login?next=/tickets")
    events = await page.request.get(f"{console.url}/console/events")
    assert events.status == 401
    assert js_errors == []


# -- every page ------------------------------------------------------------------------------

PAGES = (
    ("runners", "/", "Runners"),
    ("runs", "/runs", "Runs"),
    ("run", "/runs/route-1", "Run route-1"),
    ("tickets", "/tickets", "Tickets"),
    ("review", "/review", "Review"),
)


async def test_a_screenshot_of_every_page(
    console: Console, page: Page, js_errors: list[str]
) -> None:
    from playwright.async_api import expect

    await page.goto(f"{console.url}/login")
    await page.screenshot(path=screenshot_path("login"), full_page=True)
    await log_in(page, console.url)
    console.orchestrator.fire_runner("quick")  # a runner with a last run, a run in the list
    await reload_until(
        page, lambda p: p.get_by_role("row", name="quick").locator(".counts"), "1 runs, 0 failed"
    )
    for name, path, heading in PAGES:
        await page.goto(f"{console.url}{path}")
        await expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
        await page.screenshot(path=screenshot_path(name), full_page=True)
        assert screenshot_path(name).stat().st_size > 1000, name
    assert js_errors == []


async def test_no_page_overflows_a_phone_width(
    console: Console, browser: Browser, js_errors: list[str]
) -> None:
    from playwright.async_api import expect

    page = await new_page(browser, js_errors, viewport=PHONE, is_mobile=True, has_touch=True)
    wide: dict[str, tuple[int, int]] = {}

    async def measure(name: str) -> None:
        widths = await page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        if widths[0] > widths[1]:
            wide[name] = (widths[0], widths[1])
        await page.screenshot(path=screenshot_path(f"{name}-390"), full_page=True)

    await page.goto(f"{console.url}/login")
    await measure("login")
    await log_in(page, console.url)
    for name, path, heading in PAGES:
        await page.goto(f"{console.url}{path}")
        await expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
        await measure(name)
    assert js_errors == []
    assert wide == {}, f"wider than the viewport (scrollWidth, innerWidth): {wide}"
