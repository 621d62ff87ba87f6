"""Bluesky ingest: a Jetstream-shaped firehose at 2,000 events/s into a SQLite store.

    .venv/bin/python bench/jetstream.py [--rate 2000] [--seconds 20] [--match 0.01]

A subprocess serves a local Jetstream `/subscribe` (and an appview answering
getProfiles for any DID) and sends `rate` events a second for `seconds` seconds: posts
with realistic facets (tags, links, mentions, replies), about `match` of them tagged
#slz (and as many #slzx, which must not match), reposts, deletes and identity events.
This process runs the real `BlueskySource` under a `SourceRunner`, filtering and
storing into a SQLite file, as `backchannel collect` would.

Printed: events handled per second, matched messages stored (checked against what the
server sent), pages stored and how long after its last event was sent each was stored
(under a second throughout: the collector kept up), appview requests, and the collector process's CPU use
(process time over wall time, all threads: the store runs in a worker thread). The
server's CPU is not counted: it is another process.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# -- server (subprocess) -----------------------------------------------------------------

WORDS = (
    "the keynote was great and the slides are online now what do you think about social learning "
    "in large organisations our team tried this last year results were mixed but promising see "
    "thread below coffee break soon anyone going to the afternoon workshop on open badges"
).split()
OTHER_TAGS = ["art", "news", "photography", "bookclub", "gaming", "slzx", "python", "elearning", "science"]


def _span(text: str, fragment: str) -> dict[str, int]:
    at = text.index(fragment)
    start = len(text[:at].encode())
    return {"byteStart": start, "byteEnd": start + len(fragment.encode())}


class Firehose:
    """Synthetic events; remembers what it made so the result can be checked."""

    def __init__(self, match: float, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.match = match
        self.recent: list[str] = []  # at-uris of recent posts, for reposts and deletes
        self.matched: set[str] = set()  # #slz posts sent
        self.deleted: set[str] = set()
        self.n = 0

    def event(self, time_us: int) -> dict[str, Any]:
        self.n += 1
        rng = self.rng
        did = f"did:plc:bench{rng.randrange(20_000):05d}"
        roll = rng.random()
        if roll < 0.01:
            return {
                "did": did,
                "time_us": time_us,
                "kind": "identity",
                "identity": {
                    "did": did,
                    "handle": f"new{self.n}.bsky.social",
                    "seq": self.n,
                    "time": "2026-06-22T12:00:00Z",
                },
            }
        rkey = f"3l{self.n:011d}"
        if roll < 0.15 and self.recent:
            subject = rng.choice(self.recent)
            record = {
                "$type": "app.bsky.feed.repost",
                "subject": {"uri": subject, "cid": "bafyrei"},
                "createdAt": "2026-06-22T12:00:00.000Z",
            }
            return self._commit(did, time_us, "app.bsky.feed.repost", rkey, record)
        if roll < 0.19 and self.recent:
            uri = self.recent.pop(rng.randrange(len(self.recent)))
            self.deleted.add(uri)
            owner, _, key = uri.removeprefix("at://").partition("/app.bsky.feed.post/")
            return {
                "did": owner,
                "time_us": time_us,
                "kind": "commit",
                "commit": {
                    "rev": rkey,
                    "operation": "delete",
                    "collection": "app.bsky.feed.post",
                    "rkey": key,
                },
            }
        return self._commit(did, time_us, "app.bsky.feed.post", rkey, self._post(did, rkey))

    def _post(self, did: str, rkey: str) -> dict[str, Any]:
        rng = self.rng
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(8, 40)))
        facets = []
        if rng.random() < 0.1:
            shown = "example.com/articles/2026/06/social-lea..."
            text = f"🎉 {text} {shown}"
            uri = "https://example.com/articles/2026/06/social-learning-at-scale"
            facets.append(
                {
                    "index": _span(text, shown),
                    "features": [{"$type": "app.bsky.richtext.facet#link", "uri": uri}],
                }
            )
        if rng.random() < 0.1:
            text = f"@friend.bsky.social {text}"
            facets.append(
                {
                    "index": _span(text, "@friend.bsky.social"),
                    "features": [{"$type": "app.bsky.richtext.facet#mention", "did": "did:plc:friend"}],
                }
            )
        roll = rng.random()
        tags = []
        if roll < self.match:
            tags.append(rng.choice(["slz", "SLZ", "Slz"]))
        elif roll < 0.35:
            tags.extend(rng.sample(OTHER_TAGS, rng.randrange(1, 3)))
        for tag in tags:
            text = f"{text} #{tag}"
            facets.append(
                {
                    "index": _span(text, f"#{tag}"),
                    "features": [{"$type": "app.bsky.richtext.facet#tag", "tag": tag}],
                }
            )
        record: dict[str, Any] = {
            "$type": "app.bsky.feed.post",
            "text": text,
            "langs": ["en"],
            "createdAt": "2026-06-22T12:00:00.000Z",
        }
        if facets:
            record["facets"] = facets
        if self.recent and rng.random() < 0.3:
            parent = {"uri": rng.choice(self.recent), "cid": "bafyrei"}
            record["reply"] = {"root": parent, "parent": parent}
        uri = f"at://{did}/app.bsky.feed.post/{rkey}"
        if tags and tags[0].lower() == "slz":
            self.matched.add(uri)
        self.recent.append(uri)
        if len(self.recent) > 2000:
            self.recent.pop(0)
        return record

    @staticmethod
    def _commit(did: str, time_us: int, collection: str, rkey: str, record: dict[str, Any]) -> dict[str, Any]:
        return {
            "did": did,
            "time_us": time_us,
            "kind": "commit",
            "commit": {
                "rev": rkey,
                "operation": "create",
                "collection": collection,
                "rkey": rkey,
                "record": record,
                "cid": f"bafyrei{rkey}",
            },
        }


async def serve(rate: int, seconds: float, match: float) -> None:
    from aiohttp import web

    from bench.common import serve_until_stdin_closes

    firehose = Firehose(match)
    done = asyncio.Event()

    async def subscribe(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        loop = asyncio.get_running_loop()
        start = loop.time()
        total = int(rate * seconds)
        while firehose.n < total:
            # Send what the schedule says is due by now: a late tick catches up, so the
            # rate is the schedule's, not the event loop's.
            due = min(total, int((loop.time() - start) * rate) + 1)
            while firehose.n < due:
                await ws.send_str(orjson.dumps(firehose.event(time.time_ns() // 1000)).decode())
            await asyncio.sleep(0.005)
        print(
            f"SENT {firehose.n} {len(firehose.matched)} {len(firehose.matched & firehose.deleted)}",
            flush=True,
        )
        await done.wait()
        return ws

    async def profiles(request: web.Request) -> web.Response:
        actors = request.query.getall("actors", [])[:25]
        views = [
            {"did": a, "handle": f"{a.rsplit(':', 1)[-1]}.bsky.social", "displayName": a[-5:]} for a in actors
        ]
        return web.json_response({"profiles": views})

    app = web.Application()
    app.router.add_get("/subscribe", subscribe)
    app.router.add_get("/xrpc/app.bsky.actor.getProfiles", profiles)

    async def end_streams(app: web.Application) -> None:
        done.set()

    app.on_shutdown.append(end_streams)
    await serve_until_stdin_closes(app)


# -- collector (this process) --------------------------------------------------------------


async def collect(port: int, server: subprocess.Popen[str], seconds: float, db: Path) -> None:
    from backchannel.jobs import SourceRunner
    from backchannel.sources.base import Page, http_session
    from backchannel.sources.bluesky import BlueskySource
    from backchannel.store import Store

    store = Store(f"sqlite:///{db}")
    source = BlueskySource(
        ["slz"], key="bluesky:bench", endpoint=f"ws://127.0.0.1:{port}", appview=f"http://127.0.0.1:{port}"
    )
    pages: list[float] = []
    lags: list[float] = []

    class Runner(SourceRunner):
        async def store_page(self, page: Page) -> None:
            began = time.perf_counter()
            await super().store_page(page)
            pages.append(time.perf_counter() - began)
            if page.cursor:
                # From the moment the page's last event was sent to its being stored.
                lags.append(time.time() - int(page.cursor) / 1e6)

    runner = Runner(store, "bench", source)
    async with http_session() as http:
        wall0, cpu0 = time.perf_counter(), time.process_time()
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        task = asyncio.create_task(runner.run_stream(http))
        assert server.stdout is not None
        line = await asyncio.get_running_loop().run_in_executor(None, server.stdout.readline)
        sent, matched, matched_deleted = (int(x) for x in line.split()[1:])
        # The last events are in the batch being read; the next flush (<= 0.5 s) stores them.
        deadline = time.perf_counter() + 10
        while source.events < sent and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        last = len(pages)
        while len(pages) == last and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        usage = resource.getrusage(resource.RUSAGE_SELF)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    stored = store.count("bench", include_reposts=False)
    reposts = store.count("bench") - stored
    listed = sum(1 for _ in store.messages("bench"))
    store.close()
    user, system = usage.ru_utime - usage0.ru_utime, usage.ru_stime - usage0.ru_stime
    pages.sort()
    lags.sort()
    print(f"events sent         {sent:,} in {seconds:g} s")
    print(f"events handled      {source.events:,} in {wall:.1f} s = {source.events / wall:,.0f} events/s")
    print(
        f"#slz posts          sent {matched}, stored {stored} ({listed} listed after {matched_deleted} deleted)"
    )
    print(f"reposts stored      {reposts} (reposts of tracked posts only)")
    print(
        f"pages stored        {len(pages)}, store_page p50 {pages[len(pages) // 2] * 1000:.1f} ms, "
        f"max {pages[-1] * 1000:.1f} ms"
    )
    print(f"sent-to-stored lag  p50 {lags[len(lags) // 2] * 1000:.0f} ms, max {lags[-1] * 1000:.0f} ms")
    print(f"appview requests    {source.profiles.requests}")
    print(
        f"collector CPU       {cpu:.2f} s of {wall:.1f} s wall = {cpu / wall:.1%} of one core "
        f"(user {user:.2f} s, system {system:.2f} s)"
    )
    print(f"peak RSS            {usage.ru_maxrss / 1024:.0f} MiB")
    assert stored == matched, f"stored {stored} of {matched} #slz posts"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--match", type=float, default=0.01)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.rate, args.seconds, args.match))
        return
    from bench.common import machine, served

    print(f"machine: {machine()}")
    command = [
        sys.executable,
        __file__,
        "--serve",
        f"--rate={args.rate}",
        f"--seconds={args.seconds}",
        f"--match={args.match}",
    ]
    with served(command, stop_timeout=5) as [server], tempfile.TemporaryDirectory() as tmp:
        asyncio.run(collect(server.port, server.process, args.seconds, Path(tmp) / "bench.db"))


if __name__ == "__main__":
    main()
