from __future__ import annotations

from datetime import UTC, datetime, timedelta

from backchannel.bulk import bulk_ingest
from backchannel.core.models import Message, Network
from backchannel.sources.archive import Rejected
from backchannel.store import Store

T0 = datetime(2026, 6, 22, 12, tzinfo=UTC)


def msg(i: int) -> Message:
    return Message(Network.X, str(i), f"https://x.com/i/status/{i}", "a", "A", f"t {i}", T0 + timedelta(seconds=i))


def test_bulk_ingest_batches_counts_and_reports(store: Store) -> None:
    items: list[Message | Rejected] = [msg(i) for i in range(25)]
    items.insert(7, Rejected("line 8", "bad JSON"))
    items += [msg(3), msg(4)]  # delivered twice
    seen: list[Rejected] = []
    stats = bulk_ingest(store, "slz", items, batch_size=10, on_rejected=seen.append)
    assert (stats.added, stats.duplicates) == (25, 2)
    assert seen == stats.rejected == [Rejected("line 8", "bad JSON")]
    assert not stats.ok
    assert [m.seq for m in store.messages("slz", order="seq")] == list(range(1, 26))
    again = bulk_ingest(store, "slz", [msg(i) for i in range(30)], batch_size=7)
    assert (again.added, again.duplicates) == (5, 25) and again.ok
