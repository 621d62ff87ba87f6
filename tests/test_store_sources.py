from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from backchannel.core.models import Message, Network
from backchannel.store import Store

T0 = datetime(2026, 6, 22, 12, 0, tzinfo=UTC)


def toot(i: int, text: str = "") -> Message:
    return Message(
        network=Network.MASTODON,
        network_id=str(i),
        uri=f"https://mastodon.example/users/a/statuses/{i}",
        author_handle="a@mastodon.example",
        author_name="A",
        text=text or f"toot {i} #slz",
        created_at=T0 + timedelta(seconds=i),
        hashtags=("slz",),
    )


def test_cursor_is_saved_with_the_rows(store: Store) -> None:
    store.ingest("slz", [toot(1), toot(2)], cursor=("mastodon:a", "2"))
    assert store.cursor("mastodon:a") == "2"
    store.ingest("slz", [], cursor=("mastodon:a", "3"))
    assert store.cursor("mastodon:a") == "3"
    assert store.cursor("other") is None


def test_failed_batch_saves_neither_rows_nor_cursor(store: Store) -> None:
    store.ingest("slz", [toot(1)], cursor=("mastodon:a", "1"))
    broken = toot(2)
    object.__setattr__(broken, "network_id", None)  # past the model's checks: the database refuses it
    with pytest.raises(sa.exc.IntegrityError):
        store.ingest("slz", [toot(3), broken], cursor=("mastodon:a", "3"))
    assert store.cursor("mastodon:a") == "1"
    assert store.count("slz") == 1


def test_edits_and_deletes_are_applied_and_numbered(store: Store) -> None:
    a, b = store.ingest("slz", [toot(1), toot(2)]).added
    changes = store.apply_upstream(
        "slz", edits=[toot(1, "edited: will it work? #slz")], deletes=[toot(2).uri, "https://unknown"]
    )
    assert [(c.seq, c.action) for c in changes] == [(3, "edit"), (4, "delete")]
    edited = store.message("slz", a.id)
    assert edited.message.text.startswith("edited") and edited.is_question
    assert [m.message.network_id for m in store.messages("slz")] == ["1"]
    assert store.message("slz", b.id).deleted
    assert not store.wall_rules("slz").visible(store.message("slz", b.id))
    # A delete seen twice is applied once.
    assert store.apply_upstream("slz", deletes=[toot(2).uri]) == []


def test_source_states_and_gaps(store: Store) -> None:
    store.set_source_state("slz", "mastodon:a", "collecting", collected=5)
    store.set_source_state("slz", "mastodon:a", "sleeping", detail="rate limit", next_try=T0, collected=2)
    (state,) = store.source_states("slz")
    assert (state.state, state.collected, state.next_try) == ("sleeping", 7, T0)
    store.record_gap("slz", "youtube:x", T0, T0 + timedelta(minutes=3), "chat not available")
    (gap,) = store.gaps("slz")
    assert gap.reason == "chat not available" and gap.gap_to - gap.gap_from == timedelta(minutes=3)
