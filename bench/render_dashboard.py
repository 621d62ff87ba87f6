"""Dashboard rendering in Chromium with a 10,000-message session.

    .venv/bin/python bench/render_dashboard.py [--count 10000] [--runs 5]

Loads a synthetic session into a temporary SQLite store, serves the whole app on a
free port and opens the dashboard in Debian's Chromium (/usr/bin/chromium). Per run,
and as a median, it prints the time from navigation start to:

- first rows: the first page of the feed (200 rows) rendered, in the frame that paints
  it (the page's `bc:first-rows` performance mark);
- snapshot loaded: feed page, wall rules, question queue and statistics all rendered
  (`bc:snapshot`). The target for both is under 1 s.

Then, once: the time to page through the whole session by scrolling to the end (the
"load older" pages, 200 messages each, appended to the windowed list), and the frame
intervals while scrolling from the newest to the oldest of all loaded messages
(p50 / p95 / max; 16.7 ms is one frame at 60 Hz).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from browser_support import LiveServer, browser_missing, launch, login  # noqa: E402

from backchannel.bulk import bulk_ingest  # noqa: E402
from backchannel.server.security import hash_password  # noqa: E402
from backchannel.sources.archive import read_archive  # noqa: E402
from backchannel.store import Store  # noqa: E402
from bench.common import machine, write_session  # noqa: E402

EVENT = "bench"
PASSWORD = "bench-password"

MARKS = """() => {
  const at = (name) => performance.getEntriesByName(name)[0]?.startTime ?? null;
  return { firstRows: at("bc:first-rows"), snapshot: at("bc:snapshot") };
}"""

PAGE_THROUGH = """async () => {
  const feed = document.querySelector("#feed");
  const status = document.querySelector("#older-status");
  const started = performance.now();
  while (!status.textContent.startsWith("Beginning")) {
    feed.scrollTop = feed.scrollHeight;
    await new Promise((resolve) => requestAnimationFrame(resolve));
    if (performance.now() - started > 120000) throw new Error("paging did not finish in 2 minutes");
  }
  return { ms: performance.now() - started, rows: feed.querySelectorAll(".row").length,
           loaded: document.querySelector("#feed-count").textContent };
}"""

SCROLL = """async (step) => {
  const feed = document.querySelector("#feed");
  feed.scrollTop = 0;
  await new Promise((resolve) => requestAnimationFrame(resolve));
  const frames = [];
  let last = performance.now();
  for (let y = step; y < feed.scrollHeight; y += step) {
    feed.scrollTop = y;
    await new Promise((resolve) => requestAnimationFrame(resolve));
    const now = performance.now();
    frames.push(now - last);
    last = now;
  }
  return frames;
}"""


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def bench(count: int, runs: int) -> None:
    from playwright.async_api import async_playwright

    with tempfile.TemporaryDirectory() as tmp:
        session = write_session(Path(tmp) / "session.jsonl", count)
        store = Store(f"sqlite:///{tmp}/bench.db")
        store.add_user("bench", hash_password(PASSWORD))
        started = time.perf_counter()
        bulk_ingest(store, EVENT, read_archive(session, format="jsonl", event=EVENT))
        print(f"loaded {count:,} messages into SQLite in {time.perf_counter() - started:.2f} s")
        try:
            async with LiveServer(store) as server, async_playwright() as playwright:
                browser = await launch(playwright)
                context = await browser.new_context(viewport={"width": 1440, "height": 900})
                page = await context.new_page()
                await login(page, server.url, "bench", PASSWORD, "/")
                url = f"{server.url}/events/{EVENT}"
                first_rows: list[float] = []
                snapshot: list[float] = []
                for run in range(runs):
                    await page.goto(url)
                    await page.wait_for_selector("body[data-ready='true']", state="attached", timeout=30_000)
                    marks = await page.evaluate(MARKS)
                    first_rows.append(marks["firstRows"])
                    snapshot.append(marks["snapshot"])
                    label = "cold (first stats request)" if run == 0 else "warm"
                    print(
                        f"run {run + 1}: first rows {marks['firstRows']:6.0f} ms, "
                        f"snapshot loaded {marks['snapshot']:6.0f} ms  [{label}]"
                    )
                print(
                    f"median of {runs}: first rows {statistics.median(first_rows):.0f} ms, "
                    f"snapshot loaded {statistics.median(snapshot):.0f} ms (target < 1000 ms)"
                )
                paged = await page.evaluate(PAGE_THROUGH)
                print(
                    f"paging through the session by scrolling: {paged['ms'] / 1000:.2f} s "
                    f"({paged['loaded']}; {paged['rows']} row elements in the DOM)"
                )
                frames = await page.evaluate(SCROLL, 300)
                print(
                    f"scrolling all of it ({len(frames)} frames, 3 rows a frame): frame interval "
                    f"p50 {percentile(frames, 50):.1f} ms, p95 {percentile(frames, 95):.1f} ms, "
                    f"max {max(frames):.1f} ms"
                )
                await browser.close()
        finally:
            store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    missing = browser_missing()
    if missing:
        sys.exit(f"cannot run: {missing}")
    print(machine())
    asyncio.run(bench(args.count, args.runs))


if __name__ == "__main__":
    main()
