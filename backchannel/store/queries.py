"""Reading the store: listings for exports, dashboard search with paging, the public
wall's snapshot, resume backlog."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from backchannel.core.models import Change, Network, Status, StoredMessage
from backchannel.core.moderation import WallRules
from backchannel.errors import StoreError
from backchannel.store.rows import EventInfo, aware, row_reader, stored_from_row
from backchannel.store.schema import blocked_authors, changes, messages

EXPORT_FILTERS = ("all", "approved", "starred", "questions", "unanswered")

# Bounds on one wall snapshot (see `QueryMixin.wall`): the newest sequence numbers the
# database walks (at a few microseconds each, a third of a second at most), and the rows
# Python reads and judges for muted terms.
WALL_WINDOW = 100_000
WALL_SCAN = 1000


@dataclass(frozen=True, slots=True)
class MessageQuery:
    """The dashboard's search and filters. Unset fields do not filter."""

    text: str | None = None
    author: str | None = None
    question: bool | None = None
    has_link: bool | None = None
    status: Status | None = None
    network: Network | None = None
    starred: bool | None = None
    answered: bool | None = None
    pinned: bool | None = None
    # Collapse native reposts and manual copies onto their original (the feed's default).
    collapse: bool = True


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _listing(info: EventInfo, *, collapse_copies: bool, include_deleted: bool = False) -> sa.Select[Any]:
    """Messages of an event with their repost and copy counts."""
    reposts = (
        sa.select(messages.c.repost_of.label("uri"), sa.func.count().label("n"))
        .where(
            messages.c.event_id == info.id, messages.c.repost_of.is_not(None), messages.c.deleted.is_(False)
        )
        .group_by(messages.c.repost_of)
        .subquery()
    )
    copies = (
        sa.select(messages.c.copy_of.label("uri"), sa.func.count().label("n"))
        .where(messages.c.event_id == info.id, messages.c.copy_of.is_not(None))
        .group_by(messages.c.copy_of)
        .subquery()
    )
    query = (
        sa.select(
            messages,
            sa.func.coalesce(reposts.c.n, 0).label("repost_count"),
            sa.func.coalesce(copies.c.n, 0).label("copy_count"),
        )
        .outerjoin(reposts, reposts.c.uri == messages.c.uri)
        .outerjoin(copies, copies.c.uri == messages.c.uri)
        .where(messages.c.event_id == info.id, messages.c.repost_of.is_(None))
    )
    if not include_deleted:
        query = query.where(messages.c.deleted.is_(False))
    if collapse_copies:
        query = query.where(messages.c.copy_of.is_(None))
    return query


def _apply_query(query: sa.Select[Any], q: MessageQuery) -> sa.Select[Any]:
    if q.text:
        query = query.where(messages.c.text.ilike(f"%{_escape_like(q.text)}%", escape="\\"))
    if q.author:
        author = _escape_like(q.author.lstrip("@"))
        query = query.where(
            sa.or_(
                messages.c.author_handle.ilike(f"%{author}%", escape="\\"),
                messages.c.author_name.ilike(f"%{author}%", escape="\\"),
            )
        )
    if q.question is not None:
        query = query.where(messages.c.is_question.is_(q.question))
    if q.has_link is not None:
        query = query.where((messages.c.links != "[]") if q.has_link else (messages.c.links == "[]"))
    if q.status is not None:
        query = query.where(messages.c.status == q.status.value)
    if q.network is not None:
        query = query.where(messages.c.network == q.network.value)
    if q.starred is not None:
        query = query.where(messages.c.starred.is_(q.starred))
    if q.answered is not None:
        query = query.where(messages.c.answered.is_(q.answered))
    if q.pinned is not None:
        query = query.where(messages.c.pinned.is_(q.pinned))
    return query


class QueryMixin:
    """Reading. The mixins share what `Store` provides; declared here for type checkers."""

    if TYPE_CHECKING:
        engine: sa.Engine
        dialect: str

        def event(self, name: str, *, create: bool = True) -> EventInfo: ...

    def messages(
        self,
        event: str,
        *,
        order: str = "oldest",
        only: str = "all",
        after_seq: int | None = None,
        limit: int | None = None,
    ) -> Iterator[StoredMessage]:
        """Messages of an event for export: native reposts folded into a count on their
        original; manual "RT @x:" copies are listed (they are tweets of their own)."""
        info = self.event(event, create=False)
        query = _listing(info, collapse_copies=False)
        filters = {
            "all": MessageQuery(collapse=False),
            "approved": MessageQuery(status=Status.APPROVED, collapse=False),
            "starred": MessageQuery(starred=True, collapse=False),
            "questions": MessageQuery(question=True, collapse=False),
            "unanswered": MessageQuery(question=True, answered=False, collapse=False),
        }
        if only not in filters:
            raise StoreError(f"unknown filter {only!r}; expected one of {', '.join(EXPORT_FILTERS)}")
        query = _apply_query(query, filters[only])
        if after_seq is not None:
            query = query.where(messages.c.seq > after_seq)
        if order == "newest":
            query = query.order_by(messages.c.created_at.desc(), messages.c.seq.desc())
        elif order == "oldest":
            query = query.order_by(messages.c.created_at, messages.c.seq)
        elif order == "seq":
            query = query.order_by(messages.c.seq)
        else:
            raise StoreError(f"unknown order {order!r}")
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=2000).execute(query)
            pick = row_reader(result)
            for row in result:
                yield stored_from_row(row, info.name, pick)

    def search(
        self,
        event: str,
        query: MessageQuery | None = None,
        *,
        before_seq: int | None = None,
        limit: int = 50,
        oldest_first: bool = False,
    ) -> list[StoredMessage]:
        """One page of the dashboard feed, newest first (or oldest first for the
        question queue), paged by sequence number."""
        info = self.event(event, create=False)
        q = query or MessageQuery()
        select = _apply_query(_listing(info, collapse_copies=q.collapse), q)
        if before_seq is not None:
            select = select.where(
                messages.c.seq > before_seq if oldest_first else messages.c.seq < before_seq
            )
        select = select.order_by(messages.c.seq if oldest_first else messages.c.seq.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [stored_from_row(row, info.name) for row in conn.execute(select)]

    def wall(
        self, event: str, rules: WallRules, *, limit: int = 50, pinned: bool = False
    ) -> list[StoredMessage]:
        """The newest messages the public wall may show (`rules.visible`), newest first;
        `pinned`: only the pinned one.

        The work is bounded whatever the event holds. The database leaves out what it
        can judge itself (hidden, unapproved under premoderation, blocked authors,
        reposts, copies) along the (event, seq) index, so 20,000 messages of a blocked
        author cost an index walk, not 20,000 messages built and judged in Python; the
        walk covers the newest `WALL_WINDOW` sequence numbers; and Python, which judges
        muted terms, reads at most `WALL_SCAN` rows, so the answer may hold fewer than
        `limit` (a muted term that matched thousands of messages).
        """
        info = self.event(event, create=False)
        blocked = sa.exists().where(
            blocked_authors.c.event_id == info.id,
            blocked_authors.c.network == messages.c.network,
            # Blocks are stored lower case (see `moderate_event`); Python's lower() in
            # `rules.visible` catches the non-ASCII case SQLite's lower() leaves.
            blocked_authors.c.author_handle == sa.func.lower(messages.c.author_handle),
        )
        query = sa.select(
            *(c for c in messages.c if c.name != "raw"),
            sa.null().label("raw"),  # large, and the wall shows none of it
            sa.literal(0).label("repost_count"),
            sa.literal(0).label("copy_count"),
        ).where(
            messages.c.event_id == info.id,
            messages.c.seq > info.last_seq - WALL_WINDOW,
            messages.c.repost_of.is_(None),
            messages.c.copy_of.is_(None),
            messages.c.deleted.is_(False),
            ~blocked,
        )
        if rules.premoderation:
            query = query.where(messages.c.status == Status.APPROVED.value)
        else:
            query = query.where(messages.c.status != Status.HIDDEN.value)
        if pinned:
            query = query.where(messages.c.pinned.is_(True))
        query = query.order_by(messages.c.seq.desc()).limit(WALL_SCAN)
        with self.engine.connect() as conn:
            result = conn.execute(query)
            pick = row_reader(result)
            shown = (stored_from_row(row, info.name, pick) for row in result)
            return list(itertools.islice((m for m in shown if rules.visible(m)), limit))

    def message(self, event: str, message_id: int) -> StoredMessage:
        info = self.event(event, create=False)
        query = _listing(info, collapse_copies=False, include_deleted=True).where(messages.c.id == message_id)
        with self.engine.connect() as conn:
            row = conn.execute(query).one_or_none()
        if row is None:
            raise StoreError(f"no message {message_id} in event {event!r}")
        return stored_from_row(row, info.name)

    def message_by_uri(self, event: str, uri: str) -> StoredMessage | None:
        info = self.event(event, create=False)
        query = _listing(info, collapse_copies=False, include_deleted=True).where(messages.c.uri == uri)
        with self.engine.connect() as conn:
            row = conn.execute(query).one_or_none()
        return None if row is None else stored_from_row(row, info.name)

    def recent_uris(self, event: str, *, network: str | None = None, limit: int = 50_000) -> list[str]:
        """The newest stored URIs (reposts left out), oldest first: what a restarted
        stream source needs to recognise reposts, edits and deletes of posts it matched."""
        info = self.event(event)
        query = sa.select(messages.c.uri).where(
            messages.c.event_id == info.id, messages.c.repost_of.is_(None)
        )
        if network is not None:
            query = query.where(messages.c.network == str(network))
        with self.engine.connect() as conn:
            uris = list(conn.execute(query.order_by(messages.c.seq.desc()).limit(limit)).scalars())
        return uris[::-1]

    def count(self, event: str, *, include_reposts: bool = True) -> int:
        info = self.event(event, create=False)
        query = sa.select(sa.func.count()).select_from(messages).where(messages.c.event_id == info.id)
        if not include_reposts:
            query = query.where(messages.c.repost_of.is_(None))
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def stream(self, event: str, *, after_seq: int = 0) -> Iterator[StoredMessage]:
        """Every stored message, reposts included, in sequence order (for statistics)."""
        info = self.event(event, create=False)
        query = (
            sa.select(messages, sa.literal(0).label("repost_count"), sa.literal(0).label("copy_count"))
            .where(messages.c.event_id == info.id, messages.c.seq > after_seq)
            .order_by(messages.c.seq)
        )
        with self.engine.connect() as conn:
            for row in conn.execution_options(stream_results=True, yield_per=2000).execute(query):
                yield stored_from_row(row, info.name)

    def backlog(self, event: str, after_seq: int, *, limit: int = 10_000) -> list[StoredMessage | Change]:
        """Everything numbered after `after_seq` (messages and moderation changes), in
        sequence order: what a reconnecting dashboard missed."""
        info = self.event(event, create=False)
        with self.engine.connect() as conn:
            # Reposts are items too: they change their original's count on the dashboard.
            rows = conn.execute(
                sa.select(messages, sa.literal(0).label("repost_count"), sa.literal(0).label("copy_count"))
                .where(messages.c.event_id == info.id, messages.c.seq > after_seq)
                .order_by(messages.c.seq)
                .limit(limit)
            ).all()
            items: list[StoredMessage | Change] = [stored_from_row(r, info.name) for r in rows]
            change_rows = conn.execute(
                sa.select(changes)
                .where(changes.c.event_id == info.id, changes.c.seq > after_seq)
                .order_by(changes.c.seq)
                .limit(limit)
            ).all()
        for row in change_rows:
            items.append(self._change_from_row(row, info.name))
        items.sort(key=lambda item: item.seq)
        return items[:limit]

    def _change_from_row(self, row: Any, event: str) -> Change:
        message = self.message(event, row.message_id) if row.message_id is not None else None
        return Change(
            seq=row.seq,
            action=row.action,
            actor=row.actor,
            created_at=aware(row.created_at),
            message=message,
            subject=row.subject,
            action_id=row.action_id,
        )
