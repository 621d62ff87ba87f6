"""Live statistics of an event: messages per minute, top posters, hashtags, links,
totals per network. Pure: computed from messages, updated one message at a time."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from backchannel.core.models import StoredMessage

TOP = 10


def minute(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%MZ")


@dataclass(slots=True)
class EventStats:
    total: int = 0
    reposts: int = 0
    questions: int = 0
    per_minute: Counter[str] = field(default_factory=Counter)
    posters: Counter[str] = field(default_factory=Counter)
    hashtags: Counter[str] = field(default_factory=Counter)
    links: Counter[str] = field(default_factory=Counter)
    networks: Counter[str] = field(default_factory=Counter)
    last_seq: int = 0

    def add(self, stored: StoredMessage) -> None:
        m = stored.message
        self.last_seq = max(self.last_seq, stored.seq)
        self.networks[m.network.value] += 1
        self.per_minute[minute(m.created_at)] += 1
        if m.repost_of is not None:
            self.reposts += 1
            return
        self.total += 1
        self.questions += stored.is_question
        self.posters[f"{m.network.value}:{m.author_handle}"] += 1
        self.hashtags.update({t.lower() for t in m.hashtags})
        self.links.update(set(m.links))

    def as_json(self) -> dict[str, object]:
        return {
            "total": self.total,
            "reposts": self.reposts,
            "questions": self.questions,
            "last_seq": self.last_seq,
            "per_minute": sorted(self.per_minute.items()),
            "top_posters": self.posters.most_common(TOP),
            "top_hashtags": self.hashtags.most_common(TOP),
            "top_links": self.links.most_common(TOP),
            "networks": dict(sorted(self.networks.items())),
        }


def compute(messages: Iterable[StoredMessage]) -> EventStats:
    stats = EventStats()
    for stored in messages:
        stats.add(stored)
    return stats
