from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from backchannel.core.models import Change, Message, Network, Status, StoredMessage
from backchannel.core.moderation import Action, EventAction
from backchannel.errors import StoreError
from backchannel.store import Store
from backchannel.store.queries import MessageQuery

T0 = datetime(2010, 6, 22, 12, 0, tzinfo=UTC)


def msg(i: int, text: str = "", handle: str = "abi", **kw: object) -> Message:
    m = Message(
        network=Network.X,
        network_id=str(i),
        uri=f"https://x.com/i/status/{i}",
        author_handle=handle,
        author_name=handle.title(),
        text=text or f"message {i} #slz",
        created_at=T0 + timedelta(seconds=i),
        hashtags=("slz",),
    )
    return replace(m, **kw)  # type: ignore[arg-type]


def test_moderation_changes_share_the_message_sequence(store: Store) -> None:
    added = store.ingest("slz", [msg(1), msg(2)]).added
    change = store.moderate("slz", added[0].id, Action.HIDE, actor="alice")
    assert change.seq == 3 and change.actor == "alice"
    assert change.message is not None and change.message.moderation.status is Status.HIDDEN
    assert store.ingest("slz", [msg(3)]).added[0].seq == 4
    items = store.backlog("slz", after_seq=1)
    assert [item.seq for item in items] == [2, 3, 4]
    assert isinstance(items[1], Change) and isinstance(items[2], StoredMessage)


def test_retried_action_applies_once(store: Store) -> None:
    (m,) = store.ingest("slz", [msg(1)]).added
    first = store.moderate("slz", m.id, Action.STAR, actor="alice", action_id="click-1")
    again = store.moderate("slz", m.id, Action.STAR, actor="alice", action_id="click-1")
    assert first.seq == again.seq == 2
    assert store.event("slz").last_seq == 2


def test_pinning_one_message_unpins_the_other(store: Store) -> None:
    a, b = store.ingest("slz", [msg(1), msg(2)]).added
    store.moderate("slz", a.id, Action.PIN, actor="m")
    store.moderate("slz", b.id, Action.PIN, actor="m")
    assert not store.message("slz", a.id).moderation.pinned
    pinned = store.message("slz", b.id).moderation
    assert pinned.pinned and pinned.status is Status.APPROVED


def test_unknown_message_is_an_error(store: Store) -> None:
    store.ingest("slz", [msg(1)])
    with pytest.raises(StoreError):
        store.moderate("slz", 999, Action.HIDE, actor="m")


def test_wall_rules_follow_blocks_mutes_and_premoderation(store: Store) -> None:
    added = store.ingest("slz", [msg(1, handle="Spammer"), msg(2, text="buy cheap pills #slz"), msg(3)]).added
    store.moderate_event("slz", EventAction.BLOCK, "x:@spammer", actor="m")
    store.moderate_event("slz", EventAction.MUTE, "cheap pills", actor="m")
    rules = store.wall_rules("slz")
    assert [rules.visible(m) for m in added] == [False, False, True]
    store.moderate_event("slz", EventAction.PREMODERATION_ON, actor="m")
    rules = store.wall_rules("slz")
    assert not rules.visible(store.message("slz", added[2].id))
    store.moderate("slz", added[2].id, Action.APPROVE, actor="m")
    assert rules.visible(store.message("slz", added[2].id))
    store.moderate_event("slz", EventAction.UNBLOCK, "x:spammer", actor="m")
    assert ("x", "spammer") not in store.wall_rules("slz").blocked
    with pytest.raises(StoreError):
        store.moderate_event("slz", EventAction.BLOCK, "nobody", actor="m")


def test_search_filters_and_pages(store: Store) -> None:
    store.ingest(
        "slz",
        [
            msg(1, text="Are chatrooms passe? #slz", handle="kategraham23"),
            msg(2, text="see http://example.com #slz", links=("http://example.com",)),
            msg(3, text="100%_literal #slz"),
            *[msg(10 + i) for i in range(5)],
        ],
    )
    assert [m.message.network_id for m in store.search("slz", MessageQuery(question=True))] == ["1"]
    assert [m.message.network_id for m in store.search("slz", MessageQuery(has_link=True))] == ["2"]
    assert [m.message.network_id for m in store.search("slz", MessageQuery(author="KATE"))] == ["1"]
    assert [m.message.network_id for m in store.search("slz", MessageQuery(text="%_l"))] == ["3"]
    page1 = store.search("slz", limit=3)
    assert [m.seq for m in page1] == [8, 7, 6]
    page2 = store.search("slz", before_seq=page1[-1].seq, limit=3)
    assert [m.seq for m in page2] == [5, 4, 3]
    oldest = store.search("slz", MessageQuery(question=True, answered=False), oldest_first=True)
    assert [m.message.network_id for m in oldest] == ["1"]


def test_manual_retweets_collapse_onto_the_original_in_the_feed(store: Store) -> None:
    original = msg(
        1, text="#slz Being social is not about tools - it's all about behaviours", handle="abisignorelli"
    )
    copy = msg(
        2, text="RT @abisignorelli: #slz Being social is not about tools - it's all about…", handle="c"
    )
    native = msg(3, text="", handle="d", repost_of=original.uri)
    store.ingest("slz", [original])
    added = store.ingest("slz", [copy, native]).added
    assert [m.copy_of for m in added] == [original.uri, None]
    (feed,) = store.search("slz")
    assert feed.message.uri == original.uri and feed.copy_count == 1 and feed.repost_count == 1
    # The export lists manual copies (they are messages of their own) but not native reposts.
    assert [m.message.network_id for m in store.messages("slz")] == ["1", "2"]
