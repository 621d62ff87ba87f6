"""The dashboard and the wall in a real browser (Debian's Chromium via Playwright),
against the whole app served on a free port: pages, JSON API, websockets, SQLite.

Every page is watched for dialogs, Content-Security-Policy violations and script
errors (`PageWatch`); waits are Playwright's auto-waiting `expect`, never sleeps.
Missing Chromium or Playwright skips these tests, except in CI, where they fail.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from browser_support import LiveServer, PageWatch, browser_missing, launch, login
from support import unavailable

from backchannel.core.models import Message, Network
from backchannel.core.moderation import Action
from backchannel.hub import Hub
from backchannel.server.keys import HUB, publish
from backchannel.server.security import hash_password
from backchannel.sources.archive import Rejected, read_archive
from backchannel.store import Store
from backchannel.store.queries import MessageQuery

pytestmark = [
    pytest.mark.browser,
    # aiohttp-session stores its keys on the request under plain strings; the same
    # allowance as tests/test_server.py until it uses web.RequestKey.
    pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning:aiohttp_session"),
]

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SLZ = ROOT / "replay_data" / "slz.jsonl"
PASSWORD = "correct-horse-battery"
T0 = datetime(2026, 3, 5, 14, 0, tzinfo=UTC)

HOSTILE_TEXT = "<img src=x onerror=alert(1)><script>alert(2)</script> why?"
HOSTILE_NAME = "<b>x</b>"


def message(n: int, text: str, *, handle: str = "alice", name: str = "Alice", **fields: Any) -> Message:
    return Message(
        network=Network.X,
        network_id=str(n),
        uri=f"https://x.com/i/status/{n}",
        author_handle=handle,
        author_name=name,
        text=text,
        created_at=T0 + timedelta(seconds=n),
        permalink=f"https://x.com/{handle}/status/{n}",
        hashtags=("slz",),
        **fields,
    )


@pytest.fixture
def sqlite_store(sqlite_url: str) -> Iterator[Store]:
    store = Store(sqlite_url)
    store.add_user("mod", hash_password(PASSWORD))
    store.add_user("mod2", hash_password(PASSWORD))
    yield store
    store.close()


@pytest.fixture
def hub() -> Hub:
    return Hub()


@pytest.fixture
async def server(sqlite_store: Store, hub: Hub) -> AsyncIterator[LiveServer]:
    async with LiveServer(sqlite_store, hub=hub) as live:
        yield live


@pytest.fixture
async def browser(server: LiveServer) -> AsyncIterator[Any]:
    # Depends on `server` so that the browser closes first, before the server stops.
    missing = browser_missing()
    if missing:
        unavailable("the browser", missing)
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await launch(playwright)
        yield chromium
        await chromium.close()


@pytest.fixture
def watch() -> PageWatch:
    return PageWatch()


async def open_page(browser: Any, watch: PageWatch, **options: Any) -> Any:
    context = await browser.new_context(**({"viewport": {"width": 1440, "height": 900}} | options))
    return watch.attach(await context.new_page())


async def dashboard(browser: Any, server: LiveServer, watch: PageWatch, event: str, user: str = "mod") -> Any:
    page = await open_page(browser, watch)
    await login(page, server.url, user, PASSWORD, f"/events/{event}")
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    return page


async def wall(browser: Any, server: LiveServer, watch: PageWatch, event: str) -> Any:
    page = await open_page(browser, watch, viewport={"width": 1600, "height": 900})
    await page.goto(f"{server.url}/wall/{event}")
    await expect(page.locator("body")).to_have_attribute("data-ready", "true")
    return page


def row(page: Any, text: str) -> Any:
    """The feed row whose own text (not a quoted parent) contains `text`."""
    return page.locator("#feed .row").filter(has=page.locator(".text", has_text=text))


def expect(target: Any) -> Any:
    from playwright.async_api import expect as playwright_expect

    return playwright_expect(target)


# -- live feed ----------------------------------------------------------------------------


async def test_dashboard_shows_replayed_messages_live(
    server: LiveServer, browser: Any, watch: PageWatch
) -> None:
    server.store.event("live")
    page = await dashboard(browser, server, watch, "live")
    await expect(page.locator("#feed .row")).to_have_count(0)

    await server.replay(
        "live",
        [
            message(1, "Welcome to the webinar #slz"),
            message(2, "How do we start with social learning?", handle="bob", name="Bob"),
            message(3, "Great slides so far #slz", handle="carol", name="Carol"),
        ],
    )

    await expect(page.locator("#feed .row")).to_have_count(3)
    # Newest on top.
    await expect(page.locator('#feed .row[aria-posinset="1"]')).to_contain_text("Great slides so far")
    await expect(page.locator('#feed .row[aria-posinset="3"]')).to_contain_text("Welcome to the webinar")
    # The question reached the queue from the live item.
    await expect(page.locator("#questions .q")).to_have_count(1)
    await expect(page.locator("#questions")).to_contain_text("How do we start")
    await expect(page.locator("#q-count")).to_have_text("1")
    # Statistics follow (throttled, a few seconds).
    await expect(page.locator("#totals")).to_contain_text("3", timeout=15_000)
    watch.check()


async def test_pause_buffers_new_messages_without_losing_any(
    server: LiveServer, browser: Any, watch: PageWatch
) -> None:
    server.store.ingest("live", [message(1, "Before the pause")])
    page = await dashboard(browser, server, watch, "live")
    await expect(row(page, "Before the pause")).to_be_visible()

    await page.keyboard.press(" ")
    await expect(page.locator("#pause")).to_have_attribute("aria-pressed", "true")
    await server.replay("live", [message(2, "During the pause, one"), message(3, "During the pause, two")])
    await expect(page.locator("#newcount")).to_have_text(re.compile(r"^2 new"))
    await expect(row(page, "During the pause")).to_have_count(0)

    await page.click("#newcount")
    await expect(page.locator("#pause")).to_have_attribute("aria-pressed", "false")
    await expect(page.locator("#feed .row")).to_have_count(3)
    await expect(page.locator('#feed .row[aria-posinset="1"]')).to_contain_text("During the pause, two")
    await expect(page.locator("#newcount")).to_be_hidden()
    watch.check()


async def test_live_items_respect_the_active_filter(
    server: LiveServer, browser: Any, watch: PageWatch
) -> None:
    server.store.ingest("live", [message(1, "From alice"), message(2, "From bob", handle="bob", name="Bob")])
    page = await dashboard(browser, server, watch, "live")
    await expect(page.locator("#feed .row")).to_have_count(2)

    await page.fill("input[name=author]", "bob")
    await expect(page.locator("#feed .row")).to_have_count(1)
    await server.replay(
        "live", [message(3, "Alice again"), message(4, "Bob again", handle="bob", name="Bob")]
    )
    await expect(row(page, "Bob again")).to_be_visible()
    await expect(row(page, "Alice again")).to_have_count(0)

    await page.click("#filters button[type=reset]")
    await expect(page.locator("#feed .row")).to_have_count(4)
    watch.check()


async def test_reposts_and_copies_fold_onto_the_original_and_replies_show_their_parent(
    server: LiveServer, browser: Any, watch: PageWatch
) -> None:
    original = message(1, "Social learning is all about connections, not tools at all #slz")
    server.store.ingest("live", [original])
    page = await dashboard(browser, server, watch, "live")

    await server.replay(
        "live",
        [
            message(2, "", handle="bob", name="Bob", repost_of=original.uri),
            message(
                3,
                "RT @alice: Social learning is all about connections, not tools at all #slz",
                handle="carol",
            ),
            message(4, "Agreed, tools come second", handle="dave", name="Dave", reply_to=original.uri),
        ],
    )

    await expect(page.locator("#feed .row")).to_have_count(2)
    first = row(page, "Social learning is all about")
    await expect(first).to_contain_text("1 repost")
    await expect(first).to_contain_text("1 RT copy")
    reply = row(page, "Agreed, tools come second")
    await expect(reply.locator(".reply")).to_contain_text("Social learning is all about")
    watch.check()


# -- moderation ------------------------------------------------------------------------


async def test_hiding_a_message_drops_it_from_the_wall(
    server: LiveServer, browser: Any, watch: PageWatch
) -> None:
    server.store.ingest(
        "live", [message(1, "Keep me on the wall"), message(2, "Hide me please"), message(3, "Pin me up")]
    )
    page = await dashboard(browser, server, watch, "live")
    screen = await wall(browser, server, watch, "live")
    await expect(screen.locator(".wall-card", has_text="Hide me please")).to_be_visible()

    # Keyboard: click a row to put the cursor on it, then h hides it.
    await row(page, "Hide me please").locator(".text").click()
    await page.keyboard.press("h")
    await expect(row(page, "Hide me please").locator(".chip-hidden")).to_be_visible()
    await expect(row(page, "Hide me please")).to_contain_text("hid by you")
    await expect(screen.locator(".wall-card", has_text="Hide me please")).to_have_count(0)
    await expect(screen.locator(".wall-card", has_text="Keep me on the wall")).to_be_visible()

    # Pin another: the wall features it; hiding it drops it from the featured spot too.
    await row(page, "Pin me up").locator(".text").click()
    await page.keyboard.press("p")
    await expect(screen.locator("#featured .wall-card")).to_contain_text("Pin me up")
    await row(page, "Pin me up").locator("button[data-act=hide]").click()
    await expect(screen.locator("#featured")).to_be_hidden()
    await expect(screen.locator(".wall-card", has_text="Pin me up")).to_have_count(0)
    watch.check()


async def test_other_moderators_see_each_action_with_who_did_it(
    server: LiveServer, browser: Any, watch: PageWatch
) -> None:
    server.store.ingest(
        "live",
        [message(1, "First one"), message(2, "Second one"), message(3, "Is this a question?", handle="bob")],
    )
    mine = await dashboard(browser, server, watch, "live", user="mod")
    theirs = await dashboard(browser, server, watch, "live", user="mod2")

    # mod2 selects two messages and approves them in bulk (x, x, a).
    await theirs.locator("#feed").focus()
    await theirs.keyboard.press("g")
    await theirs.keyboard.press("j")
    await theirs.keyboard.press("x")
    await theirs.keyboard.press("j")
    await theirs.keyboard.press("x")
    await expect(theirs.locator("#bulk-count")).to_have_text("2 selected")
    await theirs.keyboard.press("a")

    for text in ("First one", "Second one"):
        await expect(row(mine, text).locator(".chip-approved")).to_be_visible()
        await expect(row(mine, text)).to_contain_text("approved by mod2")
    await expect(mine.locator("#activity")).to_contain_text("mod2 approved")

    # The question leaves everyone's queue when one moderator marks it answered.
    await expect(mine.locator("#questions .q")).to_have_count(1)
    await theirs.locator("#questions .q button", has_text="Answered").click()
    await expect(mine.locator("#questions .q")).to_have_count(0)
    await expect(row(mine, "Is this a question?")).to_contain_text("marked answered by mod2")
    watch.check()


async def test_premoderation_and_blocks_are_shared_and_reach_the_wall(
    server: LiveServer, browser: Any, watch: PageWatch
) -> None:
    server.store.ingest("live", [message(1, "Seen by all"), message(2, "From a spammer", handle="spammer")])
    page = await dashboard(browser, server, watch, "live")
    screen = await wall(browser, server, watch, "live")
    await expect(screen.locator(".wall-card")).to_have_count(2)

    # Block the author: the row's button needs a second click to confirm.
    block = row(page, "From a spammer").locator("button[data-act=block]")
    await block.click()
    await expect(block).to_have_text("Sure? Block")
    await block.click()
    await expect(page.locator("#blocked")).to_contain_text("@spammer")
    await expect(row(page, "From a spammer")).to_contain_text("Off wall: author blocked")
    await expect(screen.locator(".wall-card", has_text="From a spammer")).to_have_count(0)

    # Premoderation: the wall keeps only approved messages, until one is approved.
    await page.click("#premod")
    await expect(page.locator("#premod")).to_have_attribute("aria-checked", "true")
    await expect(screen.locator(".wall-card")).to_have_count(0)
    await row(page, "Seen by all").locator("button[data-act=approve]").click()
    await expect(screen.locator(".wall-card", has_text="Seen by all")).to_be_visible()
    watch.check()


# -- connection ----------------------------------------------------------------------------


async def test_a_dropped_connection_resumes_with_what_it_missed(
    server: LiveServer, browser: Any, watch: PageWatch
) -> None:
    server.store.ingest("live", [message(1, "Before the drop")])
    page = await dashboard(browser, server, watch, "live")
    # Stored but never published: only the resume path can bring it to the page.
    server.store.ingest("live", [message(2, "Missed while away")])
    await expect(row(page, "Missed while away")).to_have_count(0)

    await server.app[HUB].close(code=1012, reason="restarting")
    await expect(page.locator("#conn")).to_have_text(re.compile(r"Resumed · 1 missed item"))
    await expect(row(page, "Missed while away")).to_be_visible()
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=10_000)
    watch.check()


@pytest.mark.parametrize("hub", [Hub(max_gap=2)], ids=["small-gap"])
async def test_a_gap_too_large_to_replay_reloads_the_snapshot(
    server: LiveServer, browser: Any, watch: PageWatch
) -> None:
    server.store.ingest("live", [message(1, "Before the drop")])
    page = await dashboard(browser, server, watch, "live")
    server.store.ingest("live", [message(n, f"Missed number {n}") for n in range(2, 8)])

    await server.app[HUB].close(code=1012, reason="restarting")
    await expect(page.locator("#conn")).to_have_text("Resumed · reloaded")
    await expect(page.locator("#feed .row")).to_have_count(7)
    watch.check()


# -- security ------------------------------------------------------------------------------


HOSTILE_FIELDS: dict[str, Any] = {
    "links": ("javascript:alert(1)", " JaVaScRiPt:alert(7)", "data:text/html,<script>alert(8)</script>"),
    "hashtags": ("<svg onload=alert(5)>",),
}


def hostile(n: int, text: str = HOSTILE_TEXT) -> Message:
    return Message(
        network=Network.X,
        network_id=str(n),
        uri=f"https://x.com/i/status/{n}",
        author_handle="evil\u202e",
        author_name=HOSTILE_NAME,
        text=text,
        created_at=T0 + timedelta(seconds=n),
        permalink="javascript:alert(3)",
        reply_to="javascript:alert(4)",
        **HOSTILE_FIELDS,
    )


async def assert_inert(page: Any, scripts: int) -> None:
    """No element was made from message data: only our own module script exists, no
    image, no <b>, no link to anything but http(s) or our own pages."""
    assert await page.locator("script").count() == scripts
    assert await page.locator("img, iframe, object, embed, b, svg script").count() == 0
    bad_links = await page.evaluate(
        """() => [...document.querySelectorAll('a[href]')]
            .map(a => a.getAttribute('href'))
            .filter(h => !/^https?:\\/\\//.test(h) && !h.startsWith('/'))"""
    )
    assert bad_links == []
    assert await page.locator("[onerror], [onload], [onmouseover]").count() == 0


async def test_hostile_messages_render_as_inert_text(
    server: LiveServer, browser: Any, watch: PageWatch
) -> None:
    breakout = '" onmouseover="alert(6)" x="'
    server.store.ingest(
        "live",
        [hostile(1), hostile(2, breakout + " \u200b\u200f zero-width and RTL"), message(3, "x" * 20_000)],
    )
    page = await dashboard(browser, server, watch, "live")
    await server.replay("live", [hostile(4, HOSTILE_TEXT + " (live)")])

    await expect(row(page, "(live)")).to_be_visible()
    await expect(page.locator("#feed .row")).to_have_count(4)
    first = row(page, "(live)")
    await expect(first.locator(".text")).to_contain_text(
        "<img src=x onerror=alert(1)><script>alert(2)</script>"
    )
    await expect(first.locator(".name")).to_have_text(HOSTILE_NAME)
    await expect(first.locator(".row-meta .unsafe-url", has_text="javascript:alert(1)")).to_have_count(1)
    await expect(first.locator(".row-meta .unsafe-url", has_text="an earlier message")).to_have_count(1)
    await expect(page.locator("#questions")).to_contain_text("<script>alert(2)</script>")
    await expect(page.locator("#top-hashtags")).to_contain_text("<svg onload=alert(5)>", timeout=15_000)
    await row(page, "onmouseover").hover()
    await assert_inert(page, scripts=1)

    screen = await wall(browser, server, watch, "live")
    await expect(screen.locator(".wall-card", has_text="(live)")).to_be_visible()
    await expect(screen.locator(".wall-card .wall-name").first).to_have_text(HOSTILE_NAME)
    await assert_inert(screen, scripts=1)
    watch.check()


async def test_sources_panel_shows_states_and_errors_as_text(
    server: LiveServer, browser: Any, watch: PageWatch
) -> None:
    server.store.event("live")
    page = await dashboard(browser, server, watch, "live")
    await expect(page.locator("#sources")).to_have_text("No live sources (replay or import only).")

    hostile = "<img src=x onerror=alert(1)>"
    server.store.set_source_state("live", "mastodon:tag", "failing", last_error=hostile, collected=12)
    server.store.set_source_state(
        "live", "bluesky:search", "sleeping", next_try=datetime.now(UTC) + timedelta(minutes=2)
    )
    server.store.record_gap("live", "mastodon:tag", T0, T0 + timedelta(minutes=3), "<b>stream</b> dropped")
    await page.reload()  # rather than wait for the 10 s poll

    failing = page.locator('#sources .src[data-source="mastodon:tag"]')
    await expect(failing.locator(".src-state")).to_have_text("failing")
    await expect(failing.locator(".src-state")).to_have_class(re.compile(r"\bsrc-bad\b"))
    await expect(failing.locator(".src-error")).to_have_text(hostile)
    await expect(failing).to_contain_text("12 collected")
    await expect(failing.locator(".src-gap")).to_contain_text("<b>stream</b> dropped")
    sleeping = page.locator('#sources .src[data-source="bluesky:search"]')
    await expect(sleeping.locator(".src-state")).to_have_class(re.compile(r"\bsrc-wait\b"))
    await expect(sleeping.locator(".src-next")).to_contain_text("next try")
    await assert_inert(page, scripts=1)
    watch.check()


async def test_the_dashboard_needs_a_login(server: LiveServer, browser: Any, watch: PageWatch) -> None:
    server.store.event("live")
    page = await open_page(browser, watch)
    await page.goto(f"{server.url}/events/live")
    await expect(page).to_have_url(re.compile(r"/login\?next=(/|%2F)events(/|%2F)live$"))
    await expect(page.locator("form input[name=next]")).to_have_value("/events/live")

    await page.fill("input[name=username]", "mod")
    await page.fill("input[name=password]", "wrong password")
    await page.click("button[type=submit]")
    await expect(page.locator(".form-error")).to_contain_text("Wrong user name or password")

    await page.fill("input[name=username]", "mod")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await expect(page).to_have_url(f"{server.url}/events/live")
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")

    # Logging out ends the live feed at once, and the page says so.
    await page.click(".topbar button[type=submit]")
    await expect(page).to_have_url(re.compile(r"/login$"))
    watch.check()


async def test_logout_stops_an_open_dashboard(server: LiveServer, browser: Any, watch: PageWatch) -> None:
    server.store.event("live")
    page = await dashboard(browser, server, watch, "live")
    other = await page.context.new_page()
    await other.goto(f"{server.url}/")
    await other.click("button[type=submit]")  # the events page's logout
    await expect(page.locator("#conn")).to_have_attribute("data-state", "logged-out")
    await expect(page.locator("#session-ended")).to_be_visible()
    watch.check()


# -- screenshots for the README ----------------------------------------------------------------


def load_slz(store: Store) -> None:
    store.ingest("slz", [m for m in read_archive(SLZ, event="slz") if not isinstance(m, Rejected)])
    newest = store.search("slz", limit=200)
    for i, stored in enumerate(newest[:24]):
        if i % 3 != 1:
            store.moderate("slz", stored.id, Action.APPROVE, actor="mod2")
    store.moderate("slz", newest[3].id, Action.STAR, actor="mod2")
    store.moderate("slz", newest[9].id, Action.HIDE, actor="mod2")
    store.moderate("slz", newest[12].id, Action.PIN, actor="mod")
    for stored in store.search("slz", MessageQuery(question=True), limit=200, oldest_first=True)[:3]:
        store.moderate("slz", stored.id, Action.ANSWER, actor="mod")


async def test_screenshots_of_the_slz_session(server: LiveServer, browser: Any, watch: PageWatch) -> None:
    load_slz(server.store)
    DOCS.mkdir(exist_ok=True)
    page = await dashboard(browser, server, watch, "slz")
    await expect(page.locator("body")).to_have_attribute("data-ready", "true")
    await expect(page.locator("#chart rect").first).to_be_attached()
    await page.locator("#feed").focus()
    for key in ("g", "j", "x", "j"):  # one message selected, the cursor on the next
        await page.keyboard.press(key)
    # Another moderator at work: their actions reach this page live, with their name.
    newest = server.store.search("slz", limit=6)
    publish(server.app, "slz", [server.store.moderate("slz", newest[5].id, Action.STAR, actor="mod2")])
    await expect(row(page, newest[5].message.text[:30])).to_contain_text("starred by mod2")
    await page.mouse.move(0, 0)
    await expect(page.locator("#feed .row.is-cursor")).to_have_count(1)
    await page.screenshot(path=str(DOCS / "dashboard.png"), animations="disabled")

    screen = await wall(browser, server, watch, "slz")
    await expect(screen.locator("#featured .wall-card")).to_be_visible()
    await screen.screenshot(path=str(DOCS / "wall.png"), animations="disabled")
    assert (DOCS / "dashboard.png").stat().st_size > 10_000
    assert (DOCS / "wall.png").stat().st_size > 10_000
    watch.check()
