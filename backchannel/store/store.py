"""The store: the single source of truth for events and messages.

A synchronous SQLAlchemy 2 Core facade over SQLite (the default, a file) or
PostgreSQL. Async callers run it in a worker thread (`asyncio.to_thread`); the
ingest path is one transaction per batch and never uses the ORM.

Ingest is idempotent: within one transaction the event's row is locked (a write on
`events.last_seq`, which also takes SQLite's write lock), the batch is bulk-loaded
into a temporary staging table (COPY on PostgreSQL), and one `INSERT … SELECT`
moves the rows whose URI the event does not hold yet, numbering them from the
event's last sequence number. Sequence numbers therefore increase in arrival
order without gaps, and a message delivered twice is stored once.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from backchannel.core.models import Message, Moderation, Network, Status, StoredMessage
from backchannel.errors import StoreError
from backchannel.store.schema import events, messages

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"

_STAGED_COLUMNS = (
    "network",
    "network_id",
    "uri",
    "author_handle",
    "author_name",
    "text",
    "created_at",
    "permalink",
    "reply_to",
    "repost_of",
    "hashtags",
    "mentions",
    "links",
    "raw",
)


@dataclass(frozen=True, slots=True)
class EventInfo:
    id: int
    name: str
    epoch: str
    last_seq: int
    premoderation: bool


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What one ingest call did: the stored new messages (in sequence order) and
    how many of the batch were already present."""

    added: list[StoredMessage]
    added_count: int
    duplicates: int


EXPORT_FILTERS = ("all", "approved", "starred")


def normalise_url(url: str) -> str:
    """Accept a plain file path, `sqlite:///…` or `postgresql://…`; pick our drivers."""
    if "://" not in url:
        return f"sqlite:///{url}"
    scheme, rest = url.split("://", 1)
    if scheme in ("postgresql", "postgres", "postgresql+psycopg2"):
        return f"postgresql+psycopg://{rest}"
    if scheme in ("sqlite", "postgresql+psycopg", "sqlite+pysqlite"):
        return url
    raise StoreError(f"unsupported database URL scheme {scheme!r} (use sqlite:/// or postgresql://)")


def _make_engine(url: str) -> sa.Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy own transactions (the pysqlite default defers BEGIN in
            # ways that break locking), then tune for a single busy writer.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA temp_store=MEMORY")
            cursor.execute("PRAGMA cache_size=-65536")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _sqlite_begin(conn: sa.Connection) -> None:
            conn.exec_driver_sql("BEGIN")

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def _json_list(values: Sequence[str]) -> str:
    return orjson.dumps(list(values)).decode()


def _aware(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class Store:
    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = normalise_url(url)
        self.engine = _make_engine(url)
        self.dialect = self.engine.dialect.name
        if migrate:
            self.migrate()

    # -- lifecycle -------------------------------------------------------------------

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _alembic_config(self, connection: sa.Connection) -> Config:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = connection
        return cfg

    def migrate(self, revision: str = "head") -> None:
        """Bring the schema up to `revision` (an earlier version's database upgrades in place)."""
        with self.engine.connect() as conn:
            if self.dialect == "sqlite":
                # Batch migrations rebuild tables; SQLite only honours this outside a transaction.
                conn.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
            with conn.begin():
                if self.dialect == "postgresql":
                    # Two processes starting at once must not both create the tables.
                    conn.exec_driver_sql("SELECT pg_advisory_xact_lock(4242001)")
                command.upgrade(self._alembic_config(conn), revision)
            if self.dialect == "sqlite":
                conn.connection.driver_connection.execute("PRAGMA foreign_keys=ON")  # type: ignore[union-attr]

    def schema_revision(self) -> str | None:
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    @staticmethod
    def head_revision() -> str | None:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        return ScriptDirectory.from_config(cfg).get_current_head()

    # -- events ----------------------------------------------------------------------

    def event(self, name: str, *, create: bool = True) -> EventInfo:
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(events).where(events.c.name == name)).one_or_none()
            if row is None:
                if not create:
                    raise StoreError(f"no event named {name!r}")
                insert = events.insert().values(
                    name=name, epoch=uuid.uuid4().hex, last_seq=0, created_at=datetime.now(UTC)
                )
                if self.dialect == "postgresql":
                    from sqlalchemy.dialects.postgresql import insert as pg_insert

                    insert = (
                        pg_insert(events)
                        .values(name=name, epoch=uuid.uuid4().hex, last_seq=0, created_at=datetime.now(UTC))
                        .on_conflict_do_nothing(index_elements=["name"])
                    )
                conn.execute(insert)
                row = conn.execute(sa.select(events).where(events.c.name == name)).one()
        return EventInfo(row.id, row.name, row.epoch, row.last_seq, row.premoderation)

    def event_names(self) -> list[str]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(events.c.name).order_by(events.c.id)).scalars())

    # -- ingest ----------------------------------------------------------------------

    def ingest(
        self, event: str | EventInfo, batch: Iterable[Message], *, want_rows: bool = True
    ) -> IngestResult:
        """Store the messages of `batch` that the event does not hold yet.

        Returns the newly stored messages with their sequence numbers (empty when
        `want_rows` is false, for bulk import where only counts matter).
        """
        info = event if isinstance(event, EventInfo) else self.event(event)
        unique: dict[str, Message] = {}
        delivered = 0
        for message in batch:
            delivered += 1
            unique.setdefault(message.uri, message)
        if not unique:
            return IngestResult([], 0, delivered)
        staged = list(unique.values())
        with self.engine.begin() as conn:
            base = conn.execute(
                sa.update(events)
                .where(events.c.id == info.id)
                .values(last_seq=events.c.last_seq)
                .returning(events.c.last_seq)
            ).scalar_one()
            self._stage(conn, staged)
            returning = " RETURNING id, seq, uri" if want_rows else ""
            columns = ", ".join(_STAGED_COLUMNS)
            result = conn.exec_driver_sql(
                f"INSERT INTO messages (event_id, seq, {columns}) "
                f"SELECT {int(info.id)}, {int(base)} + row_number() OVER (ORDER BY s.ord), "
                + ", ".join(f"s.{c}" for c in _STAGED_COLUMNS)
                + f" FROM bc_staging s WHERE NOT EXISTS (SELECT 1 FROM messages m "
                f"WHERE m.event_id = {int(info.id)} AND m.uri = s.uri) ORDER BY s.ord" + returning
            )
            if want_rows:
                rows = result.fetchall()
                added_count = len(rows)
            else:
                rows = []
                added_count = result.rowcount
            if added_count:
                conn.execute(
                    sa.update(events).where(events.c.id == info.id).values(last_seq=base + added_count)
                )
        added = sorted(
            (StoredMessage(id=r[0], seq=r[1], message=_with_event(unique[r[2]], info.name)) for r in rows),
            key=lambda m: m.seq,
        )
        return IngestResult(added, added_count, delivered - added_count)

    def _stage(self, conn: sa.Connection, staged: list[Message]) -> None:
        columns = ", ".join(_STAGED_COLUMNS)
        if self.dialect == "postgresql":
            conn.exec_driver_sql(
                "CREATE TEMP TABLE IF NOT EXISTS bc_staging (ord integer, network text, "
                "network_id text, uri text, author_handle text, author_name text, text text, "
                "created_at timestamptz, permalink text, reply_to text, repost_of text, "
                "hashtags text, mentions text, links text, raw text) ON COMMIT DELETE ROWS"
            )
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            with cursor.copy(f"COPY bc_staging (ord, {columns}) FROM STDIN") as copy:
                for ord_, m in enumerate(staged):
                    copy.write_row(_staged_row(ord_, m, m.created_at))
            cursor.close()
        else:
            conn.exec_driver_sql(
                "CREATE TEMP TABLE IF NOT EXISTS bc_staging (ord INTEGER, network, network_id, "
                "uri, author_handle, author_name, text, created_at, permalink, reply_to, "
                "repost_of, hashtags, mentions, links, raw)"
            )
            conn.exec_driver_sql("DELETE FROM bc_staging")
            placeholders = ", ".join("?" * (len(_STAGED_COLUMNS) + 1))
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            cursor.executemany(
                f"INSERT INTO bc_staging (ord, {columns}) VALUES ({placeholders})",
                [_staged_row(i, m, _sqlite_time(m.created_at)) for i, m in enumerate(staged)],
            )
            cursor.close()

    # -- reading ---------------------------------------------------------------------

    def messages(
        self,
        event: str,
        *,
        order: str = "oldest",
        only: str = "all",
        after_seq: int | None = None,
        limit: int | None = None,
        include_reposts: bool = False,
    ) -> Iterator[StoredMessage]:
        """Messages of an event, native reposts folded into a count on their original."""
        info = self.event(event, create=False)
        reposts = (
            sa.select(messages.c.repost_of.label("uri"), sa.func.count().label("n"))
            .where(messages.c.event_id == info.id, messages.c.repost_of.is_not(None))
            .group_by(messages.c.repost_of)
            .subquery()
        )
        query = (
            sa.select(messages, sa.func.coalesce(reposts.c.n, 0).label("repost_count"))
            .outerjoin(reposts, reposts.c.uri == messages.c.uri)
            .where(messages.c.event_id == info.id)
        )
        if not include_reposts:
            query = query.where(messages.c.repost_of.is_(None))
        if only == "approved":
            query = query.where(messages.c.status == Status.APPROVED.value)
        elif only == "starred":
            query = query.where(messages.c.starred.is_(True))
        elif only != "all":
            raise StoreError(f"unknown filter {only!r}; expected one of {', '.join(EXPORT_FILTERS)}")
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
            for row in result:
                yield _stored(row, info.name)

    def count(self, event: str, *, include_reposts: bool = True) -> int:
        info = self.event(event, create=False)
        query = sa.select(sa.func.count()).select_from(messages).where(messages.c.event_id == info.id)
        if not include_reposts:
            query = query.where(messages.c.repost_of.is_(None))
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def set_moderation(self, event: str, message_id: int, **changes: Any) -> None:
        """Minimal moderation write (the dashboard issue builds its change log on this)."""
        allowed = {"status", "starred", "answered", "pinned"}
        if not changes.keys() <= allowed:
            raise StoreError(f"unknown moderation fields: {sorted(changes.keys() - allowed)}")
        info = self.event(event, create=False)
        values = {k: (v.value if isinstance(v, Status) else v) for k, v in changes.items()}
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(messages)
                .where(messages.c.event_id == info.id, messages.c.id == message_id)
                .values(**values)
            )


def _sqlite_time(dt: datetime) -> str:
    # The format SQLAlchemy's SQLite DateTime type reads back.
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _staged_row(ord_: int, m: Message, created: Any) -> tuple[Any, ...]:
    return (
        ord_,
        m.network.value,
        m.network_id,
        m.uri,
        m.author_handle,
        m.author_name,
        m.text,
        created,
        m.permalink,
        m.reply_to,
        m.repost_of,
        _json_list(m.hashtags),
        _json_list(m.mentions),
        _json_list(m.links),
        m.raw,
    )


def _with_event(message: Message, event: str) -> Message:
    if message.event == event:
        return message
    from dataclasses import replace

    return replace(message, event=event)


def _stored(row: Any, event: str) -> StoredMessage:
    m = row._mapping
    message = Message(
        network=Network(m["network"]),
        network_id=m["network_id"],
        uri=m["uri"],
        author_handle=m["author_handle"],
        author_name=m["author_name"],
        text=m["text"],
        created_at=_aware(m["created_at"]),
        event=event,
        permalink=m["permalink"],
        reply_to=m["reply_to"],
        repost_of=m["repost_of"],
        hashtags=tuple(orjson.loads(m["hashtags"])),
        mentions=tuple(orjson.loads(m["mentions"])),
        links=tuple(orjson.loads(m["links"])),
        raw=m["raw"],
    )
    moderation = Moderation(
        status=Status(m["status"]),
        starred=bool(m["starred"]),
        answered=bool(m["answered"]),
        pinned=bool(m["pinned"]),
    )
    return StoredMessage(m["id"], m["seq"], message, moderation, int(m["repost_count"]))
