from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from backchannel.core.models import Message, Network, Status
from backchannel.core.moderation import Action
from backchannel.errors import StoreError
from backchannel.store import Store

T0 = datetime(2010, 6, 22, 12, 0, tzinfo=UTC)


def msg(i: int, **kw: object) -> Message:
    base = Message(
        network=Network.X,
        network_id=str(i),
        uri=f"https://x.com/i/status/{i}",
        author_handle=f"user{i}",
        author_name=f"User {i}",
        text=f"message {i} #slz",
        created_at=T0 + timedelta(seconds=i),
        hashtags=("slz",),
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def test_ingest_assigns_increasing_sequence_numbers(store: Store) -> None:
    result = store.ingest("slz", [msg(1), msg(2), msg(3)])
    assert [m.seq for m in result.added] == [1, 2, 3]
    assert [m.message.network_id for m in result.added] == ["1", "2", "3"]
    assert result.duplicates == 0
    second = store.ingest("slz", [msg(4)])
    assert [m.seq for m in second.added] == [4]
    assert store.event("slz").last_seq == 4


def test_same_message_delivered_twice_is_stored_once(store: Store) -> None:
    store.ingest("slz", [msg(1), msg(2)])
    again = store.ingest("slz", [msg(2), msg(1), msg(3), msg(3)])
    assert again.added_count == 1
    assert again.duplicates == 3
    assert [m.seq for m in again.added] == [3]  # no gap left by the duplicates
    assert store.count("slz") == 3


def test_same_uri_from_another_server_is_folded(store: Store) -> None:
    store.ingest("slz", [msg(1, network=Network.MASTODON, network_id="111")])
    other = store.ingest("slz", [msg(1, network=Network.MASTODON, network_id="999")])
    assert other.added_count == 0
    assert store.count("slz") == 1


def test_events_number_independently(store: Store) -> None:
    store.ingest("a", [msg(1), msg(2)])
    result = store.ingest("b", [msg(1)])
    assert [m.seq for m in result.added] == [1]
    assert store.count("a") == 2 and store.count("b") == 1


def test_messages_round_trip_and_order(store: Store) -> None:
    original = msg(
        7,
        text="héllo <b>&amp;</b> 🎉",
        mentions=("joningham",),
        links=("http://bit.ly/x",),
        reply_to="https://x.com/i/status/6",
        permalink="https://x.com/u/status/7",
        raw='{"id": "7"}',
    )
    store.ingest("slz", [msg(8), original])
    got = list(store.messages("slz", order="oldest"))
    assert [m.message.network_id for m in got] == ["7", "8"]
    assert got[0].message == replace(original, event="slz")
    assert [m.message.network_id for m in store.messages("slz", order="newest")] == ["8", "7"]


def test_reposts_count_onto_their_original(store: Store) -> None:
    original = msg(1)
    boosts = [msg(10 + i, repost_of=original.uri, text="") for i in range(3)]
    store.ingest("slz", [original, *boosts, msg(2)])
    listed = list(store.messages("slz"))
    assert [(m.message.network_id, m.repost_count) for m in listed] == [("1", 3), ("2", 0)]
    assert store.count("slz") == 5
    assert store.count("slz", include_reposts=False) == 2


def test_filters_use_moderation_state(store: Store) -> None:
    added = store.ingest("slz", [msg(1), msg(2), msg(3)]).added
    store.moderate("slz", added[0].id, Action.APPROVE, actor="mod")
    store.moderate("slz", added[2].id, Action.STAR, actor="mod")
    assert [m.message.network_id for m in store.messages("slz", only="approved")] == ["1"]
    assert [m.message.network_id for m in store.messages("slz", only="starred")] == ["3"]
    with pytest.raises(StoreError):
        list(store.messages("slz", only="bogus"))


def test_messages_after_seq(store: Store) -> None:
    store.ingest("slz", [msg(i) for i in range(1, 6)])
    assert [m.seq for m in store.messages("slz", order="seq", after_seq=3)] == [4, 5]


def test_unknown_event_is_an_error(store: Store) -> None:
    with pytest.raises(StoreError):
        list(store.messages("nope"))


def test_reopening_keeps_data_and_epoch(db_url: str) -> None:
    with Store(db_url) as first:
        first.ingest("slz", [msg(1)])
        epoch = first.event("slz").epoch
    with Store(db_url) as second:
        assert second.event("slz").epoch == epoch
        assert second.ingest("slz", [msg(1), msg(2)]).added[0].seq == 2


def test_database_of_an_earlier_version_upgrades_in_place(db_url: str) -> None:
    old = Store(db_url, migrate=False)
    old.migrate("0001")
    assert old.schema_revision() == "0001"
    with old.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO events (id, name, epoch, last_seq, created_at) VALUES (1, 'slz', 'e1', 1, :t)"
            ),
            {"t": T0},
        )
        conn.execute(
            sa.text(
                "INSERT INTO messages (event_id, seq, network, network_id, uri, author_handle, author_name,"
                " text, created_at, hashtags, mentions, links) VALUES (1, 1, 'x', '1', 'https://x.com/i/status/1',"
                " 'abi', 'Abi', 'old row', :t, '[]', '[]', '[]')"
            ),
            {"t": T0},
        )
    old.close()
    with Store(db_url) as upgraded:
        assert upgraded.schema_revision() == Store.head_revision()
        (row,) = upgraded.messages("slz")
        assert row.message.text == "old row"
        assert row.moderation.status is Status.NEW
        assert upgraded.ingest("slz", [msg(2)]).added[0].seq == 2


def test_schema_module_matches_migrations(db_url: str) -> None:
    from backchannel.store.schema import metadata

    with Store(db_url) as s:
        inspector = sa.inspect(s.engine)
        for table in metadata.sorted_tables:
            migrated = {c["name"] for c in inspector.get_columns(table.name)}
            assert migrated == {c.name for c in table.columns}, table.name


def test_large_batches_with_a_known_message_fall_back_without_gaps(store: Store) -> None:
    first = store.ingest("slz", [msg(i) for i in range(1500)], want_rows=False)
    assert first.added_count == 1500
    # One known message in a large batch: the direct insert is undone and the batch
    # goes the careful way, numbered without a gap.
    second = store.ingest("slz", [msg(i) for i in range(1499, 3000)])
    assert second.added_count == 1500 and second.duplicates == 1
    assert [m.seq for m in second.added] == list(range(1501, 3001))
    assert store.count("slz") == 3000
