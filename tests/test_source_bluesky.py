"""Bluesky through Jetstream: the pure normaliser, then the source end to end.

End-to-end tests run a `SourceRunner` against the fake Jetstream and appview
(`fakes.bluesky`) and a real store (SQLite and PostgreSQL). Times are in `MS`, a unit
that BACKCHANNEL_TEST_TIMEOUT_FACTOR scales on slow machines; nothing sleeps to
synchronise: tests wait for a stored row, a cursor or a connection (`eventually`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
import pytest
from fakes import eventually
from fakes.bluesky import (
    T0_US,
    FakeBluesky,
    commit,
    identity,
    link_facet,
    mention_facet,
    post,
    post_record,
    repost,
    tag_facet,
)

from backchannel.core import bluesky as core
from backchannel.core.models import Change, Network, StoredMessage
from backchannel.errors import PayloadError
from backchannel.eventfile import build_sources, parse
from backchannel.jobs import SourceRunner
from backchannel.sources.base import Page, SourceState, http_session
from backchannel.sources.bluesky import BlueskySource
from backchannel.store import Store

MS = 0.001 * float(os.environ.get("BACKCHANNEL_TEST_TIMEOUT_FACTOR", "1"))
WANTED = frozenset({"slz"})
ALICE, BOB, CAROL = "did:plc:alice", "did:plc:bob", "did:plc:carol"
PROFILES = {
    ALICE: ("alice.bsky.social", "Alice"),
    BOB: ("bob.example.com", ""),
    CAROL: ("carol.bsky.social", "C"),
}


def event(raw: dict[str, Any]) -> core.Commit:
    parsed = core.parse_event(orjson.dumps({"time_us": T0_US, **raw}))
    assert isinstance(parsed, core.Commit)
    return parsed


def uri(did: str, rkey: str) -> str:
    return f"at://{did}/app.bsky.feed.post/{rkey}"


# -- the normaliser ----------------------------------------------------------------------


def test_tags_come_from_facets_and_the_tags_field_never_from_the_text() -> None:
    longer = event(post(ALICE, "a", "#slzx is another conference"))
    assert core.tags_of(longer.record) == ["slzx"]  # type: ignore[arg-type]
    assert not core.matches(longer.record, WANTED)  # type: ignore[arg-type]
    # "#slz" typed in the text but not made a tag facet (a client without rich text).
    untagged = event(post(ALICE, "b", "plain text mentioning #slz", facets=[]))
    assert not core.matches(untagged.record, WANTED)  # type: ignore[arg-type]
    hidden = event(post(ALICE, "c", "no hashtag in the text at all", tags=["SLZ", "other"]))
    assert core.matches(hidden.record, WANTED)  # type: ignore[arg-type]
    shouting = event(post(ALICE, "d", "Loved #SlZ today"))
    assert core.matches(shouting.record, WANTED)  # type: ignore[arg-type]
    message = core.post_message(shouting)
    assert message.hashtags == ("SlZ",)
    both = event(post(ALICE, "e", "#slz and #SLZ", tags=["slz", "extra"]))
    assert core.post_message(both).hashtags == ("slz", "extra")


def test_link_facets_count_utf8_bytes() -> None:
    # Before the link: an emoji (4 bytes, 2 UTF-16 units, 1 code point) and "é" (2 bytes).
    text = "🎉 café slides: example.com/a-long-pa... and my notes #slz"
    facets = [
        link_facet(text, "example.com/a-long-pa...", "https://example.com/a-long-path/deck.pdf"),
        link_facet(text, "my notes", "https://notes.example.org/slz"),
        tag_facet(text, "slz"),
    ]
    assert facets[0]["index"]["byteStart"] == len("🎉 café slides: ".encode()) != len("🎉 café slides: ")
    message = core.post_message(event(post(ALICE, "a", text, facets=facets)))
    # The shortened display is replaced by the URI it stands for, so the view can link it;
    # custom link text ("my notes") is the author's words and stays.
    assert message.text == "🎉 café slides: https://example.com/a-long-path/deck.pdf and my notes #slz"
    assert message.links == ("https://example.com/a-long-path/deck.pdf", "https://notes.example.org/slz")


def test_link_facet_with_a_bad_range_keeps_the_link_and_the_text() -> None:
    text = "🎉 see example.com/x... #slz"
    broken = link_facet(text, "example.com/x...", "https://example.com/xyz")
    broken["index"] = {"byteStart": 1, "byteEnd": 9}  # inside the emoji
    out_of_range = link_facet(text, "example.com/x...", "https://example.com/xyz")
    out_of_range["index"] = {"byteStart": 20, "byteEnd": 400}
    for facet in (broken, out_of_range):
        message = core.post_message(event(post(ALICE, "a", text, facets=[facet, tag_facet(text, "slz")])))
        assert message.text == text
        assert message.links == ("https://example.com/xyz",)


def test_only_http_links_are_kept() -> None:
    text = "click example.com #slz"
    facet = link_facet(text, "example.com", "javascript:alert(1)")
    message = core.post_message(event(post(ALICE, "a", text, facets=[facet])))
    assert message.links == () and message.text == text


def test_post_fields() -> None:
    text = "@bob.example.com what did you think? #slz"
    facets = [mention_facet(text, "@bob.example.com", BOB), tag_facet(text, "slz")]
    raw = post(ALICE, "3kabc", text, facets=facets, reply_to=uri(CAROL, "3kpar"), time_us=T0_US + 5)
    raw["commit"]["record"]["embed"] = {
        "$type": "app.bsky.embed.recordWithMedia",
        "record": {"$type": "app.bsky.embed.record", "record": {"uri": uri(CAROL, "3kq"), "cid": "x"}},
        "media": {
            "$type": "app.bsky.embed.external",
            "external": {"uri": "https://slz.example/", "title": "t"},
        },
    }
    commit_ = core.parse_event(orjson.dumps(raw))
    assert isinstance(commit_, core.Commit)
    message = core.post_message(commit_, core.Profile("alice.bsky.social", "Alice"), {BOB: "bob.example.com"})
    assert (message.network, message.network_id, message.uri) == (
        Network.BLUESKY,
        "3kabc",
        uri(ALICE, "3kabc"),
    )
    assert message.permalink == "https://bsky.app/profile/did:plc:alice/post/3kabc"
    assert (message.author_handle, message.author_name) == ("alice.bsky.social", "Alice")
    assert message.reply_to == uri(CAROL, "3kpar")
    assert message.mentions == ("bob.example.com",)
    assert message.links == ("https://bsky.app/profile/did:plc:carol/post/3kq", "https://slz.example/")
    assert message.created_at == datetime(2026, 6, 22, 12, 0, 0, 5, tzinfo=UTC)
    assert orjson.loads(message.raw or "")["commit"]["rkey"] == "3kabc"
    # Unknown author and mention: the DID stands in (bsky.app profile links accept DIDs).
    bare = core.post_message(commit_)
    assert (bare.author_handle, bare.author_name, bare.mentions) == (ALICE, ALICE, (BOB,))
    # A handle that no longer verifies is no name either.
    assert core.post_message(commit_, core.Profile("handle.invalid", "")).author_handle == ALICE


def test_created_at_falls_back_to_jetstream_time() -> None:
    for created in (None, "yesterday-ish"):
        raw = post(ALICE, "a", "#slz", time_us=T0_US + 2_000_000, created_at=created)
        assert core.post_message(event(raw)).created_at == datetime(2026, 6, 22, 12, 0, 2, tzinfo=UTC)


def test_repost_message_counts_on_its_subject() -> None:
    message = core.repost_message(
        event(repost(BOB, "3kr", uri(ALICE, "3kp"))), core.Profile("bob.example.com", "")
    )
    assert message.repost_of == uri(ALICE, "3kp") and message.text == ""
    assert message.uri == "at://did:plc:bob/app.bsky.feed.repost/3kr"
    assert message.author_handle == message.author_name == "bob.example.com"


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"did": "did:plc:a", "kind": "commit"}', "time_us"),
        (b'{"did": "did:plc:a", "time_us": 5, "kind": "commit"}', "commit object"),
        (
            b'{"did": "did:plc:a", "time_us": 5, "kind": "commit", "commit": {"operation": "create",'
            b' "collection": "app.bsky.feed.post", "rkey": "a"}}',
            "record",
        ),
        (
            b'{"did": "did:plc:a", "time_us": 5, "kind": "commit", "commit": {"operation": "explode"}}',
            "operation",
        ),
        (b'{"did": "did:plc:a", "time_us": 5, "kind": "gossip"}', "kind"),
        (b'{"time_us": 5, "kind": "account"}', "did"),
    ],
)
def test_malformed_events_are_refused_with_a_reason(frame: bytes, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        core.parse_event(frame)


def test_identity_and_account_events() -> None:
    found = core.parse_event(orjson.dumps({"time_us": 9, **identity(ALICE, "new.handle")}))
    assert found == core.Identity(ALICE, 9, "new.handle")
    gone = core.parse_event(
        b'{"did": "did:plc:a", "time_us": 9, "kind": "account", "account": {"active": false}}'
    )
    assert gone == core.Account("did:plc:a", 9)


# -- the source, end to end ----------------------------------------------------------------


class Collected:
    """What the runner published: the dashboard's view of the source."""

    def __init__(self) -> None:
        self.items: list[StoredMessage | Change] = []

    def __call__(self, event: str, items: list[StoredMessage | Change]) -> None:
        self.items.extend(items)

    @property
    def uris(self) -> list[str]:
        return [i.message.uri for i in self.items if isinstance(i, StoredMessage)]


async def quick_sleep(seconds: float) -> None:
    # The runner's backoff, shortened: the rules are tested in test_backoff.py.
    await asyncio.sleep(min(seconds, 10 * MS))


@asynccontextmanager
async def collecting(
    store: Store, fake: FakeBluesky, **options: Any
) -> AsyncIterator[tuple[SourceRunner, BlueskySource, Collected]]:
    options = {"flush_interval": 50 * MS, "keepalive": 5000 * MS, **options}
    source = BlueskySource(["slz"], key="bluesky:slz", endpoint=fake.ws_url, appview=fake.url, **options)
    collected = Collected()
    runner = SourceRunner(store, "slz", source, publish=collected)
    async with http_session() as http:
        task = asyncio.create_task(runner.run_stream(http, sleep=quick_sleep))
        try:
            await eventually(lambda: fake.subscribers, what="the source to connect")
            yield runner, source, collected
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_stores_tagged_posts_with_their_authors(store: Store) -> None:
    async with FakeBluesky(PROFILES) as fake, collecting(store, fake) as (runner, source, collected):
        fake.push(post(ALICE, "3k1", "Opening keynote #slz"))
        fake.push(post(BOB, "3k2", "Wrong conference #slzx"))
        fake.push(post(CAROL, "3k3", "tagged without a facet", tags=["SLZ"]))
        last = fake.push(post(BOB, "3k4", "just chatting"))
        await eventually(lambda: store.cursor("bluesky:slz") == str(last["time_us"]), what="the cursor")
        # Stored in the cursor's transaction; published just after it commits.
        await eventually(lambda: len(collected.uris) == 2, what="the two tagged posts")
        assert fake.wanted == [["app.bsky.feed.post", "app.bsky.feed.repost"]]
        assert collected.uris == [uri(ALICE, "3k1"), uri(CAROL, "3k3")]
        stored = {m.message.uri: m.message for m in store.messages("slz")}
        assert stored[uri(ALICE, "3k1")].author_handle == "alice.bsky.social"
        assert stored[uri(CAROL, "3k3")].author_name == "C"
        assert runner.state is SourceState.COLLECTING
        assert source.events == 4 and source.matched == 2


async def test_reconnect_rewinds_the_cursor_and_loses_nothing(store: Store) -> None:
    async with FakeBluesky(PROFILES) as fake, collecting(store, fake) as (_, _, collected):
        fake.push(post(ALICE, "3ka", "first #slz", time_us=T0_US))
        b = fake.push(post(BOB, "3kb", "second #slz", time_us=T0_US + 10_000_000))
        await eventually(lambda: store.cursor("bluesky:slz") == str(b["time_us"]), what="the cursor")
        # The network path dies; a post is made before the source can reconnect.
        fake.drop()
        fake.push(post(CAROL, "3kc", "posted during the drop #slz", time_us=T0_US + 20_000_000))
        await eventually(lambda: len(collected.uris) == 3, what="the post made during the drop")
        # It came back from the stored cursor less five seconds: B was sent again, A not.
        assert fake.cursors == [None, b["time_us"] - 5_000_000]
        assert store.count("slz") == 3
        assert sorted(m.message.network_id for m in store.messages("slz")) == ["3ka", "3kb", "3kc"]
        assert store.cursor("bluesky:slz") == str(T0_US + 20_000_000)


async def test_handles_are_resolved_in_batches_and_cached(store: Store) -> None:
    authors = {f"did:plc:user{i:02d}": (f"user{i:02d}.bsky.social", f"User {i}") for i in range(30)}
    async with (
        FakeBluesky(authors) as fake,
        collecting(store, fake, flush_interval=300 * MS) as (_, source, collected),
    ):
        for i, did in enumerate(authors):
            fake.push(post(did, f"3k{i:02d}", f"talk {i} #slz"))
        await eventually(lambda: len(collected.uris) == 30, what="30 posts")
        asked = [a for request in fake.profile_requests for a in request]
        assert sorted(asked) == sorted(authors)  # each author once, in getProfiles calls of <= 25
        assert all(len(r) <= 25 for r in fake.profile_requests)
        assert len(fake.profile_requests) <= 3  # two batches, three if a flush split them
        requests = len(fake.profile_requests)
        # Same authors again: all from the cache. A handle change arrives as an identity event.
        fake.push(identity("did:plc:user00", "renamed.example.com"))
        for i, did in enumerate(authors):
            fake.push(post(did, f"3m{i:02d}", f"again {i} #slz"))
        await eventually(lambda: len(collected.uris) == 60, what="30 more posts")
        assert len(fake.profile_requests) == requests
        renamed = store.message_by_uri("slz", uri("did:plc:user00", "3m00"))
        assert renamed is not None and renamed.message.author_handle == "renamed.example.com"
        assert renamed.message.author_name == "User 0"
        assert source.profiles.requests == requests


async def test_appview_failure_falls_back_to_the_did(store: Store) -> None:
    async with FakeBluesky(PROFILES) as fake, collecting(store, fake) as (_, _, collected):
        fake.fail_profiles = 1
        fake.push(post(ALICE, "3k1", "while the appview is down #slz"))
        fake.push(post(ALICE, "3k2", "still down, not asked again #slz"))
        await eventually(lambda: len(collected.uris) == 2, what="the posts")
        assert len(fake.profile_requests) == 1
        assert {m.message.author_handle for m in store.messages("slz")} == {ALICE}


async def test_reposts_of_tracked_posts_count_and_deletes_apply(store: Store) -> None:
    async with FakeBluesky(PROFILES) as fake, collecting(store, fake) as (_, _, collected):
        fake.push(post(ALICE, "3kp", "the tracked post #slz"))
        fake.push(post(CAROL, "3ku", "an untracked post"))
        await eventually(lambda: collected.uris == [uri(ALICE, "3kp")], what="the post")
        fake.push(repost(CAROL, "3kr0", uri(CAROL, "3ku")))  # not ours: ignored
        fake.push(repost(BOB, "3kr1", uri(ALICE, "3kp")))
        await eventually(lambda: len(collected.uris) == 2, what="the repost")
        (listed,) = store.messages("slz")
        assert listed.message.uri == uri(ALICE, "3kp") and listed.repost_count == 1
        assert store.count("slz") == 2  # the post and one repost; the other repost ignored
        (reposted,) = [m.message for m in store.stream("slz") if m.message.repost_of]
        assert reposted.uri == "at://did:plc:bob/app.bsky.feed.repost/3kr1"
        assert reposted.author_handle == "bob.example.com"
        # An un-repost is not applied yet (the store cannot delete a repost row): no harm done.
        fake.push(commit(BOB, "app.bsky.feed.repost", "3kr1", "delete"))
        # Deleted upstream: kept in the log, listed nowhere.
        fake.push(commit(ALICE, "app.bsky.feed.post", "3kp", "delete"))
        fake.push(commit(CAROL, "app.bsky.feed.post", "3ku", "delete"))  # not ours: no change
        await eventually(lambda: any(isinstance(i, Change) for i in collected.items), what="the delete")
        deletes = [i for i in collected.items if isinstance(i, Change)]
        assert [(c.action, c.message and c.message.message.uri) for c in deletes] == [
            ("delete", uri(ALICE, "3kp"))
        ]
        assert list(store.messages("slz")) == []
        gone = store.message_by_uri("slz", uri(ALICE, "3kp"))
        assert gone is not None and gone.deleted


async def test_an_update_is_an_edit(store: Store) -> None:
    async with FakeBluesky(PROFILES) as fake, collecting(store, fake) as (_, _, collected):
        fake.push(post(ALICE, "3kp", "fisrt draft #slz"))
        await eventually(lambda: len(collected.uris) == 1, what="the post")
        fake.push(commit(ALICE, "app.bsky.feed.post", "3kp", "update", post_record("first draft? #slz")))
        await eventually(lambda: any(isinstance(i, Change) for i in collected.items), what="the edit")
        edited = store.message_by_uri("slz", uri(ALICE, "3kp"))
        assert edited is not None and edited.message.text == "first draft? #slz" and edited.is_question
        assert store.count("slz") == 1


async def test_a_malformed_event_is_skipped_and_the_rest_kept(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "backchannel.jobs")
    async with FakeBluesky(PROFILES) as fake, collecting(store, fake) as (_, _, collected):
        fake.push(post(ALICE, "3k1", "before #slz"))
        fake.push_raw("{this is not json")
        fake.push_raw('{"did": "did:plc:alice", "kind": "commit", "commit": {}}')
        bad = {
            "$type": "app.bsky.feed.post",
            "text": 42,
            "tags": ["slz"],
            "createdAt": "2026-06-22T12:00:00Z",
        }
        fake.push(commit(ALICE, "app.bsky.feed.post", "3kbad", record=bad))
        fake.push(post(BOB, "3k2", "after #slz"))
        await eventually(lambda: len(collected.uris) == 2, what="the good posts")
        assert collected.uris == [uri(ALICE, "3k1"), uri(BOB, "3k2")]
        await eventually(lambda: len(caplog.records) == 3, what="three warnings")
        reasons = "\n".join(r.getMessage() for r in caplog.records)
        assert "not JSON" in reasons and "time_us" in reasons and "record.text must be a string" in reasons
        assert all("skipped a malformed record" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("fault", ["payload", "bug"])
async def test_an_event_the_normaliser_fails_on_is_rejected_and_the_stream_goes_on(
    store: Store, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    """Issue 10: one event the normaliser raised on (not a PayloadError) lost its whole
    batch, logged nothing and ended the runner for good."""
    if fault == "payload":
        # A post the normaliser rejects by name (a date past 9999 in UTC once raised
        # OverflowError here; it now falls back to Jetstream's time, as other unusable
        # dates do).
        bad = commit(CAROL, "app.bsky.feed.post", "3kbad", record={
            "$type": "app.bsky.feed.post", "text": 42, "tags": ["slz"], "createdAt": "2026-06-22T12:00:00Z",
        })  # fmt: skip
    else:
        bad = post(CAROL, "3kbad", "boom #slz")
        post_message = core.post_message

        def buggy(commit: core.Commit, *args: Any) -> Any:
            if commit.rkey == "3kbad":
                raise KeyError("a bug in the normaliser")
            return post_message(commit, *args)

        monkeypatch.setattr(core, "post_message", buggy)
    caplog.set_level(logging.WARNING)
    async with FakeBluesky(PROFILES) as fake, collecting(store, fake) as (runner, _, collected):
        fake.push(post(ALICE, "3k1", "first #slz"))
        fake.push(post(BOB, "3k2", "second #slz"))
        fake.push(bad)
        last = fake.push(post(ALICE, "3k3", "third #slz"))
        await eventually(lambda: len(collected.uris) == 3, what="the three good posts")
        await eventually(lambda: store.cursor("bluesky:slz") == str(last["time_us"]), what="the cursor")
        assert collected.uris == [uri(ALICE, "3k1"), uri(BOB, "3k2"), uri(ALICE, "3k3")]
        assert runner.state is SourceState.COLLECTING and fake.connections == 1
        later = fake.push(post(BOB, "3k4", "the stream goes on #slz"))
        await eventually(lambda: len(collected.uris) == 4, what="a post after the bad one")
        assert store.cursor("bluesky:slz") == str(later["time_us"])
    (rejected,) = [r for r in caplog.records if "skipped a malformed record" in r.getMessage()]
    assert uri(CAROL, "3kbad") in rejected.getMessage()
    assert ("record.text must be a string" if fault == "payload" else "KeyError") in rejected.getMessage()


async def test_a_batch_the_store_refused_is_read_again(store: Store) -> None:
    async with FakeBluesky(PROFILES) as fake, http_session() as http:
        source = BlueskySource(
            ["slz"], key="bluesky:slz", endpoint=fake.ws_url, appview=fake.url, flush_interval=50 * MS
        )

        async def broken_store(page: Page) -> None:
            if page.messages:
                raise RuntimeError("the database is down")

        reading = asyncio.create_task(source.stream(http, None, broken_store))
        await eventually(lambda: fake.subscribers, what="the source to connect")
        before = fake.push(post(BOB, "3k0", "not ours"))
        p = fake.push(post(ALICE, "3k1", "lost if the source thought it stored #slz"))
        with pytest.raises(RuntimeError, match="database is down"):
            await reading
        # What the runner does next: reconnect from the stored cursor (before the post).
        runner = SourceRunner(store, "slz", source, publish=(collected := Collected()))
        reading = asyncio.create_task(
            source.stream(http, str(before["time_us"] + 5_000_000), runner.store_page)
        )
        try:
            await eventually(lambda: collected.uris == [uri(ALICE, "3k1")], what="the post, read again")
        finally:
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)
        assert fake.cursors[-1] == before["time_us"] < p["time_us"]


async def test_a_silent_stream_is_reconnected(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "backchannel.jobs")
    async with FakeBluesky(PROFILES) as fake:
        fake.silent = 1  # the first connection opens and then says nothing
        async with collecting(store, fake, keepalive=200 * MS) as (runner, _, collected):
            await eventually(lambda: fake.connections == 2 and fake.subscribers, what="a second connection")
            fake.push(post(ALICE, "3k1", "after the silence #slz"))
            await eventually(lambda: len(collected.uris) == 1, what="the post")
            assert "no message for 0.2 s" in caplog.text
            assert runner.state is SourceState.COLLECTING


async def test_a_refused_handshake_is_an_upstream_error(store: Store) -> None:
    source = BlueskySource(
        ["slz"], key="bluesky:slz", endpoint="ws://127.0.0.1:9/nothing", appview="http://x"
    )
    runner = SourceRunner(store, "slz", source)
    async with aiohttp.ClientSession() as http:
        with pytest.raises(Exception) as raised:
            await source.stream(http, None, runner.store_page)
    assert type(raised.value).__name__ == "UpstreamError" and raised.value.status is None  # type: ignore[attr-defined]


def test_event_file_builds_the_source() -> None:
    event_file = parse(
        '[event]\nname = "slz"\nhashtags = ["#SLZ", "lrnchat"]\n'
        '[[sources]]\nnetwork = "bluesky"\nendpoint = "ws://127.0.0.1:1"\n'
    )
    (source,) = build_sources(event_file)
    assert isinstance(source, BlueskySource)
    assert source.key == "bluesky:slz" and source.wanted == {"slz", "lrnchat"}
    assert source.url("1782129600000000") == (
        "ws://127.0.0.1:1/subscribe?wantedCollections=app.bsky.feed.post"
        "&wantedCollections=app.bsky.feed.repost&cursor=1782129595000000"
    )
    assert source.url(None).endswith("repost")
