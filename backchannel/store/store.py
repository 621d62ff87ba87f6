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
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from backchannel.core.models import Message, StoredMessage
from backchannel.core.questions import is_question
from backchannel.core.retweets import manual_retweet, quotes
from backchannel.errors import StoreError
from backchannel.store.accounts import AccountMixin
from backchannel.store.rows import EventInfo, json_list, lock_event, save_cursor
from backchannel.store.schema import events, messages
from backchannel.store.sources import SourceMixin

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
    "is_question",
)


# Batches at least this large try the direct insert first: bulk imports, where nearly
# every row is new. Small live batches often repeat what a previous poll brought, and
# would pay for the undo.
FAST_PATH_MIN = 1000


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What one ingest call did: the stored new messages (in sequence order) and
    how many of the batch were already present."""

    added: list[StoredMessage]
    added_count: int
    duplicates: int


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
            # Checkpoint the write-ahead log every 16 MiB rather than every 4: fewer, larger
            # copies back into the database file while messages pour in.
            cursor.execute("PRAGMA wal_autocheckpoint=4000")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _sqlite_begin(conn: sa.Connection) -> None:
            conn.exec_driver_sql("BEGIN")

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


class Store(SourceMixin, AccountMixin):
    """The store's public face: lifecycle, events and ingest here; reading in
    `queries.py`, moderation in `moderation.py`, moderators and their sessions in
    `accounts.py`."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = normalise_url(url)
        self.engine = _make_engine(url)
        self.dialect = self.engine.dialect.name
        self._added_here = 0  # rows this Store added (PostgreSQL statistics, see _note_growth)
        self._analyse_at = 10_000
        self._ingest_targets: dict[str, EventInfo] = {}
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
        self,
        event: str | EventInfo,
        batch: Iterable[Message],
        *,
        want_rows: bool = True,
        cursor: tuple[str, str] | None = None,
    ) -> IngestResult:
        """Store the messages of `batch` that the event does not hold yet.

        Returns the newly stored messages with their sequence numbers (empty when
        `want_rows` is false, for bulk import where only counts matter). `cursor`,
        a (source, position) pair, is saved in the same transaction as the rows it
        produced, so a crash between the two can leave neither a gap nor a duplicate.
        """
        info = self._ingest_target(event)
        unique: dict[str, Message] = {}
        delivered = 0
        for message in batch:
            delivered += 1
            unique.setdefault(message.uri, message)
        if not unique:
            if cursor is not None:
                with self.engine.begin() as conn:
                    save_cursor(conn, info.id, *cursor)
            return IngestResult([], 0, delivered)
        staged = list(unique.values())
        questions = [is_question(m.text) for m in staged]
        with self.engine.begin() as conn:
            base = lock_event(conn, info.id)
            if cursor is not None:
                save_cursor(conn, info.id, *cursor)
            # (id, index into staged) of each new row, in seq order
            new: list[tuple[int, int]] = []
            added_count = 0
            if len(staged) >= FAST_PATH_MIN:
                added_count = self._insert_if_all_new(conn, info.id, base, staged, questions)
                if added_count and want_rows:
                    # The fast path numbered the batch in order: seq base + 1 is staged[0].
                    # Read through the driver's cursor, as the rows were written: a thousand
                    # ids without a result row object each.
                    reader = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
                    reader.execute(
                        f"SELECT id FROM messages WHERE event_id = {int(info.id)} AND seq > {int(base)} ORDER BY seq"
                    )
                    new = list(zip((row[0] for row in reader.fetchall()), range(len(staged)), strict=True))
                    reader.close()
            if not added_count:
                self._stage(conn, staged, questions)
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
                    index = {m.uri: i for i, m in enumerate(staged)}
                    # RETURNING promises no order; seq order is staged order.
                    new = [(r[0], index[r[2]]) for r in sorted(result.fetchall(), key=lambda r: r[1])]
                    added_count = len(new)
                else:
                    added_count = result.rowcount
            if added_count:
                conn.execute(
                    sa.update(events).where(events.c.id == info.id).values(last_seq=base + added_count)
                )
                self._note_growth(conn, added_count)
                copies = _resolve_copies(conn, info.id, [staged[i] for _, i in new] if want_rows else staged)
            else:
                copies = {}
        added = [
            StoredMessage(
                id=id_,
                seq=base + n,
                message=_with_event(staged[i], info.name),
                is_question=questions[i],
                copy_of=copies.get(staged[i].uri),
            )
            for n, (id_, i) in enumerate(new, 1)
        ]
        return IngestResult(added, added_count, delivered - added_count)

    def _ingest_target(self, event: str | EventInfo) -> EventInfo:
        """The event that ingest writes to, looked up once per name: ingest reads only its
        id and name, which never change (events are not renamed or removed), and a lookup
        per batch would cost a transaction of its own."""
        if isinstance(event, EventInfo):
            return event
        info = self._ingest_targets.get(event)
        if info is None:
            info = self._ingest_targets[event] = self.event(event)
        return info

    def _note_growth(self, conn: sa.Connection, added: int) -> None:
        """Refresh PostgreSQL's statistics each time what we added has doubled.

        The known-row check is planned from them: with statistics saying the table is
        nearly empty (as they do during a first bulk import, before autovacuum gets to
        it), PostgreSQL reads every stored message of the event for each batch instead
        of probing the unique index, and a million-row import slows to a crawl."""
        if self.dialect != "postgresql":
            return
        self._added_here += added
        if self._added_here >= self._analyse_at:
            conn.exec_driver_sql("ANALYZE messages")
            self._analyse_at = self._added_here * 2

    def _insert_if_all_new(
        self, conn: sa.Connection, event_id: int, base: int, staged: list[Message], questions: list[bool]
    ) -> int:
        """The fast path of a bulk import: insert the batch directly, numbered in order
        (COPY on PostgreSQL). If any row was already stored, undo it (numbering would
        have a gap) and return 0 so the caller takes the staging path, which skips
        known rows before numbering."""
        columns = ", ".join(_STAGED_COLUMNS)
        savepoint = conn.begin_nested()
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        if self.dialect == "postgresql":
            import psycopg

            try:
                with cursor.copy(f"COPY messages (event_id, seq, {columns}) FROM STDIN") as copy:
                    for i, (m, q) in enumerate(zip(staged, questions, strict=True), 1):
                        copy.write_row((event_id, base + i, *_staged_row(m, m.created_at, q)))
            except psycopg.errors.UniqueViolation:
                cursor.close()
                savepoint.rollback()
                return 0
            cursor.close()
            savepoint.commit()
            return len(staged)
        placeholders = ", ".join("?" * (len(_STAGED_COLUMNS) + 2))
        cursor.executemany(
            f"INSERT OR IGNORE INTO messages (event_id, seq, {columns}) VALUES ({placeholders})",
            [
                (event_id, base + i, *_staged_row(m, _sqlite_time(m.created_at), q))
                for i, (m, q) in enumerate(zip(staged, questions, strict=True), 1)
            ],
        )
        inserted = cursor.rowcount
        cursor.close()
        if inserted == len(staged):
            savepoint.commit()
            return inserted
        savepoint.rollback()
        return 0

    def _stage(self, conn: sa.Connection, staged: list[Message], questions: list[bool]) -> None:
        columns = ", ".join(_STAGED_COLUMNS)
        if self.dialect == "postgresql":
            conn.exec_driver_sql(
                "CREATE TEMP TABLE IF NOT EXISTS bc_staging (ord integer, network text, "
                "network_id text, uri text, author_handle text, author_name text, text text, "
                "created_at timestamptz, permalink text, reply_to text, repost_of text, "
                "hashtags text, mentions text, links text, raw text, is_question boolean) ON COMMIT DELETE ROWS"
            )
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            with cursor.copy(f"COPY bc_staging (ord, {columns}) FROM STDIN") as copy:
                for ord_, (m, q) in enumerate(zip(staged, questions, strict=True)):
                    copy.write_row((ord_, *_staged_row(m, m.created_at, q)))
            cursor.close()
        else:
            conn.exec_driver_sql(
                "CREATE TEMP TABLE IF NOT EXISTS bc_staging (ord INTEGER, network, network_id, "
                "uri, author_handle, author_name, text, created_at, permalink, reply_to, "
                "repost_of, hashtags, mentions, links, raw, is_question)"
            )
            conn.exec_driver_sql("DELETE FROM bc_staging")
            placeholders = ", ".join("?" * (len(_STAGED_COLUMNS) + 1))
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            cursor.executemany(
                f"INSERT INTO bc_staging (ord, {columns}) VALUES ({placeholders})",
                [
                    (i, *_staged_row(m, _sqlite_time(m.created_at), q))
                    for i, (m, q) in enumerate(zip(staged, questions, strict=True))
                ],
            )
            cursor.close()


def _resolve_copies(conn: sa.Connection, event_id: int, candidates: list[Message]) -> dict[str, str]:
    """Link manual "RT @x: …" copies among `candidates` to the message they quote."""
    wanted: dict[str, tuple[str, str]] = {}
    for m in candidates:
        if "RT" in m.text and m.repost_of is None and (found := manual_retweet(m.text)):
            wanted[m.uri] = found
    if not wanted:
        return {}
    handles = {handle.lower() for handle, _ in wanted.values()}
    rows = conn.execute(
        sa.select(messages.c.uri, messages.c.author_handle, messages.c.text)
        .where(
            messages.c.event_id == event_id,
            sa.func.lower(messages.c.author_handle).in_(handles),
            messages.c.repost_of.is_(None),
            messages.c.copy_of.is_(None),
        )
        .order_by(messages.c.seq)
    ).all()
    resolved: dict[str, str] = {}
    for uri, (handle, quoted) in wanted.items():
        for row in rows:
            if row.uri != uri and row.author_handle.lower() == handle.lower() and quotes(quoted, row.text):
                resolved[uri] = row.uri
                break
    for uri, original in resolved.items():
        conn.execute(
            sa.update(messages)
            .where(messages.c.event_id == event_id, messages.c.uri == uri)
            .values(copy_of=original)
        )
    return resolved


def _sqlite_time(dt: datetime) -> str:
    # The format SQLAlchemy's SQLite DateTime type reads back; messages are already UTC.
    if dt.tzinfo is not UTC:
        dt = dt.astimezone(UTC)
    return dt.isoformat(" ", "microseconds")[:26]  # without the "+00:00"


def _staged_row(m: Message, created: Any, question: bool) -> tuple[Any, ...]:
    return (
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
        json_list(m.hashtags),
        json_list(m.mentions),
        json_list(m.links),
        m.raw,
        question,
    )


def _with_event(message: Message, event: str) -> Message:
    if message.event == event:
        return message
    from dataclasses import replace

    return replace(message, event=event)
