"""Command line: parse arguments, build settings, call in. Nothing else lives here."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from backchannel import config
from backchannel.errors import BackchannelError, DatabaseFailed

log = logging.getLogger("backchannel")

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_ARCHIVE = REPO_ROOT / "replay_data" / "slz.jsonl"

# Exit statuses (the README's "Exit status" lists them): records rejected is 1, a usage or
# input error 2, a database that failed for good 3 (after retrying a transient failure
# for BACKCHANNEL_DB_RETRY seconds), Ctrl-C 130 as a shell reports it.
EXIT_OK, EXIT_REJECTED, EXIT_USAGE, EXIT_DATABASE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
# How long a writing process waits at exit for Redis to take what it has published.
PUBLISH_DRAIN = 30.0


def _default_event(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", path.stem).strip("-") or "event"


def _add_db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        default=None,
        help=f"database URL or SQLite file (env BACKCHANNEL_DB, default {config.setting('db', {})})",
    )


def _open_store(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from backchannel.store import Store

    return Store(args.db or config.setting("db"))


def _progress_reader(path: Path, fmt: str, event: str, show: bool):  # type: ignore[no-untyped-def]
    """The archive's items, with a progress bar (by bytes read) when on a terminal."""
    from backchannel.sources.archive import read_archive

    if not show:
        return read_archive(path, format=fmt, event=event), None
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    progress = Progress(
        "[progress.description]{task.description}", BarColumn(), DownloadColumn(), TimeRemainingColumn()
    )
    task = progress.add_task(path.name, total=path.stat().st_size)

    def advance(consumed: int) -> None:
        progress.update(task, completed=consumed)

    return read_archive(path, format=fmt, event=event, on_progress=advance), progress


def cmd_import(args: argparse.Namespace) -> int:
    from backchannel.bulk import bulk_ingest
    from backchannel.sources.archive import Rejected

    path = Path(args.path)
    event = args.event or _default_event(path)

    def report(rejected: Rejected) -> None:
        print(f"rejected {path.name}, {rejected.where}: {rejected.reason}", file=sys.stderr)

    with _open_store(args) as store:
        items, progress = _progress_reader(path, args.format, event, sys.stderr.isatty())
        if progress is not None:
            with progress:
                stats = bulk_ingest(store, event, items, on_rejected=report)
        else:
            stats = bulk_ingest(store, event, items, on_rejected=report)
    print(
        f"{path.name} -> event {event!r}: {stats.added} added, {stats.duplicates} already present, "
        f"{len(stats.rejected)} rejected"
    )
    return EXIT_OK if stats.ok else EXIT_REJECTED


@contextlib.asynccontextmanager
async def _publisher():  # type: ignore[no-untyped-def]
    """For a process that writes messages but serves no dashboard: a publish function
    that sends what it stored to every app instance through Redis when
    `BACKCHANNEL_REDIS` is set (None otherwise: the dashboards see it on their next resume)."""
    fanout = _fanout()
    if fanout is None:
        yield None
        return
    await fanout.start()
    try:
        yield fanout.publish
    finally:
        await fanout.close(drain_timeout=PUBLISH_DRAIN)


def cmd_replay(args: argparse.Namespace) -> int:
    from backchannel.pipeline import Pipeline
    from backchannel.sources.archive import Rejected, read_archive
    from backchannel.sources.replay import replay

    path = Path(args.path)
    rejected: list[Rejected] = []

    def messages():  # type: ignore[no-untyped-def]
        for item in read_archive(path, format=args.format, event=args.event):
            if isinstance(item, Rejected):
                rejected.append(item)
                print(f"rejected {path.name}, {item.where}: {item.reason}", file=sys.stderr)
            else:
                yield item

    def show(message) -> None:  # type: ignore[no-untyped-def]
        print(f"{message.created_at:%H:%M:%S} @{message.author_handle}: {message.text}")

    with _open_store(args) as store:
        pipeline = Pipeline(store, args.event, batch_size=1000 if args.speed == 0 else 200)

        async def run() -> None:
            async with _publisher() as publish:
                pipeline.publish = publish
                await replay(
                    messages(), pipeline, speed=args.speed, on_message=show if args.verbose else None
                )

        interrupted = False
        try:
            asyncio.run(run())
        except KeyboardInterrupt:
            interrupted = True
        stats = pipeline.stats
    state = "stopped" if interrupted else "replayed"
    print(
        f"{state} {path.name} into event {args.event!r}: {stats.added} added, "
        f"{stats.duplicates} already present, {len(rejected)} rejected"
    )
    return EXIT_INTERRUPTED if interrupted else (EXIT_OK if not rejected else EXIT_REJECTED)


def cmd_export(args: argparse.Namespace) -> int:
    from backchannel import export

    out = Path(args.out) if args.out else None
    with _open_store(args) as store:
        store.event(args.event, create=False)
        messages = store.messages(args.event, order=args.order, only=args.filter)
        if args.format in ("jsonl", "csv"):
            export.write_archive(messages, out or sys.stdout, fmt=args.format, force=args.force)
            return EXIT_OK
        parts = export.render_post(
            messages,
            fmt=args.format,
            part_size=args.part_size,
            template=Path(args.template) if args.template else None,
        )
    written = export.write_post(parts, out, fmt=args.format, force=args.force)
    if not written:
        sys.stdout.write("\n".join(parts))
    else:
        for path in written:
            print(f"wrote {path}", file=sys.stderr)
    return EXIT_OK


def _security_settings():  # type: ignore[no-untyped-def]
    from backchannel.server.security import SecuritySettings

    origins = tuple(o.strip() for o in config.setting("allowed_origins").split(",") if o.strip())
    return SecuritySettings(
        secret=config.setting("secret"),
        allowed_origins=origins,
        cookie_secure=config.setting("cookie_secure"),
        trusted_proxies=tuple(p for p in config.setting("trusted_proxies").split(",") if p.strip()),
        max_sockets=int(config.setting("max_sockets")),
        max_sockets_per_address=int(config.setting("max_sockets_per_address")),
    )


def _fanout():  # type: ignore[no-untyped-def]
    """The Redis fan-out when `BACKCHANNEL_REDIS` is set, else None (in-process hub)."""
    url = config.setting("redis")
    if not url:
        return None
    from backchannel.fanout import RedisFanout

    return RedisFanout(url, stream_prefix=config.setting("redis_prefix"))


def _load_event_file(path: str | None):  # type: ignore[no-untyped-def]
    from backchannel import eventfile

    if path is None:
        return None, []
    event = eventfile.load(Path(path))
    return event, eventfile.build_sources(event)


def cmd_serve(args: argparse.Namespace) -> int:
    from backchannel.jobs import Collector
    from backchannel.server.app import create_app, run
    from backchannel.server.keys import publish

    event, sources = _load_event_file(args.config)
    with _open_store(args) as store:
        background = []
        if event is not None:
            store.event(event.name)

            async def collect(app):  # type: ignore[no-untyped-def]
                collector = Collector(
                    store, event.name, sources, publish=lambda e, items: publish(app, e, items)
                )
                await collector.start()
                try:
                    await asyncio.Event().wait()
                finally:
                    await collector.stop()

            background.append(collect)
        app = create_app(
            store,
            security=_security_settings(),
            background=background,
            fanout=_fanout(),
        )
        url = f"http://{args.host}:{args.port}/"
        run(app, args.host, args.port, on_ready=lambda: print(f"backchannel serving on {url}", flush=True))
    return EXIT_OK


def cmd_collect(args: argparse.Namespace) -> int:
    """Run the event file's sources headless until SIGINT/SIGTERM."""
    import signal

    from backchannel.jobs import Collector

    event, sources = _load_event_file(args.config)
    if not sources:
        raise BackchannelError(f"{args.config} names no sources")

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with _publisher() as publish:
            collector = Collector(store, event.name, sources, publish=publish)
            await collector.start()
            print(f"collecting {event.name!r} from {len(sources)} source(s); Ctrl-C stops", flush=True)
            try:
                await stop.wait()
            finally:
                await collector.stop()

    with _open_store(args) as store:
        store.event(event.name)
        asyncio.run(run())
        print(f"stopped: {store.count(event.name)} messages stored for {event.name!r}")
    return EXIT_OK


def cmd_sources(args: argparse.Namespace) -> int:
    from backchannel.eventfile import source_types

    for network, kind in sorted(source_types().items()):
        print(f"{network}: {kind.summary}")
        for name, help_text in kind.settings.items():
            print(f"    {name:<16} {help_text}")
        for variable, help_text in kind.env.items():
            print(f"    ${variable:<15} {help_text}")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    with _open_store(args) as store:
        states = store.source_states(args.event)
        if not states:
            print("no source has run yet")
        for st in states:
            line = f"{st.event}\t{st.source}\t{st.state}\t{st.collected} collected"
            if st.next_try:
                line += f"\tnext try {st.next_try:%H:%M:%S}Z"
            if st.detail:
                line += f"\t{st.detail}"
            if st.last_error:
                line += f"\tlast error: {st.last_error}"
            print(line)
        if args.event:
            for gap in store.gaps(args.event):
                print(
                    f"gap\t{gap.source}\t{gap.gap_from:%Y-%m-%d %H:%M:%S} to {gap.gap_to:%H:%M:%S}\t{gap.reason}"
                )
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    """A fresh SQLite file, the #slz session replayed at 10x into the live dashboard."""
    import secrets
    import tempfile

    from backchannel.server.app import create_app, pipeline_for, run
    from backchannel.server.security import hash_password
    from backchannel.sources.archive import Rejected, read_archive
    from backchannel.sources.replay import replay
    from backchannel.store import Store

    if not DEMO_ARCHIVE.exists():
        raise BackchannelError(f"the demo archive is missing: {DEMO_ARCHIVE} (run from a checkout)")
    db = args.db or str(Path(tempfile.mkdtemp(prefix="backchannel-demo-")) / "demo.db")
    password = args.password or secrets.token_urlsafe(9)
    with Store(db) as store:
        store.event("slz")
        store.add_user("demo", hash_password(password))
        messages = [m for m in read_archive(DEMO_ARCHIVE, event="slz") if not isinstance(m, Rejected)]

        async def replay_slz(app):  # type: ignore[no-untyped-def]
            await replay(messages, pipeline_for(app, "slz", batch_size=50), speed=args.speed)
            log.info("the #slz replay has finished: %d messages", len(messages))

        security = _security_settings()
        if not security.secret:
            # The demo's database is new each run, so its sessions may as well be too.
            from dataclasses import replace

            from cryptography.fernet import Fernet

            security = replace(security, secret=Fernet.generate_key().decode())
        app = create_app(store, security=security, background=[replay_slz], fanout=_fanout())
        base = f"http://{args.host}:{args.port}"

        def ready() -> None:
            print(
                f"backchannel demo: #slz replays at {args.speed:g}x into {db}\n"
                f"  dashboard   {base}/events/slz   (log in as demo / {password})\n"
                f"  wall        {base}/wall/slz\n"
                f"Ctrl-C stops.",
                flush=True,
            )

        run(app, args.host, args.port, on_ready=ready)
    return EXIT_OK


def cmd_user_add(args: argparse.Namespace) -> int:
    import getpass

    from backchannel.server.security import hash_password

    password = args.password
    if password is None:
        if not sys.stdin.isatty():
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass(f"password for {args.username}: ")
    if len(password) < 8:
        raise BackchannelError("a password needs at least 8 characters")
    with _open_store(args) as store:
        store.add_user(args.username, hash_password(password))
    print(f"moderator {args.username!r} saved")
    return EXIT_OK


def cmd_user_remove(args: argparse.Namespace) -> int:
    with _open_store(args) as store:
        if not store.remove_user(args.username):
            raise BackchannelError(f"no moderator named {args.username!r}")
    print(f"moderator {args.username!r} removed; their sessions have ended")
    return EXIT_OK


def cmd_events(args: argparse.Namespace) -> int:
    with _open_store(args) as store:
        for name in store.event_names():
            print(f"{name}\t{store.count(name, include_reposts=False)} messages")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    from backchannel.sources.archive import FORMATS

    parser = argparse.ArgumentParser(
        prog="backchannel", description="Collect, moderate and recap an event's hashtag backchannel."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="more output")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("import", help="load an archive (own JSONL, Mastodon JSON, twarc2 JSONL, TAGS CSV)")
    p.add_argument("path", help="archive file")
    p.add_argument("--event", help="event name (default: the file name without extension)")
    p.add_argument(
        "--format", default="auto", choices=("auto", *FORMATS), help="archive format (default: sniffed)"
    )
    _add_db(p)
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("replay", help="feed an archive through the live pipeline at its original pace")
    p.add_argument("path", help="archive file")
    p.add_argument("--event", required=True, help="event name")
    p.add_argument("--speed", type=float, default=1.0, help="divide the original gaps by N (0: no waiting)")
    p.add_argument("--format", default="auto", choices=("auto", *FORMATS), help="archive format")
    _add_db(p)
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("export", help="write the numbered follow-up post or an archive")
    p.add_argument("--event", required=True, help="event name")
    p.add_argument(
        "--format",
        default="markdown",
        choices=("markdown", "html", "text", "jsonl", "csv"),
        help="output format",
    )
    p.add_argument("--order", default="newest", choices=("newest", "oldest"), help="message order")
    p.add_argument("--part-size", type=int, default=None, help="split the post into parts of N messages")
    p.add_argument(
        "--filter",
        default="all",
        choices=("all", "approved", "starred", "questions", "unanswered"),
        help="which messages",
    )
    p.add_argument("--out", help="output file (a directory with --part-size); default stdout")
    p.add_argument("--template", help="a Jinja2 template to render instead of the built-in one (sandboxed)")
    p.add_argument("--force", action="store_true", help="write through a symbolic link at --out")
    _add_db(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("serve", help="serve the dashboard, the wall, the API and the websocket hub")
    p.add_argument("--config", help="an event file (TOML): run its sources with the dashboard")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    _add_db(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("demo", help="replay the #slz session live into the dashboard")
    p.add_argument("--db", default=None, help="database (default: a fresh SQLite file in a temporary folder)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.add_argument("--speed", type=float, default=10.0, help="replay speed (default 10x)")
    p.add_argument("--password", default=None, help="the demo moderator's password (default: random)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("user", help="manage moderator accounts")
    user_sub = p.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    p = user_sub.add_parser(
        "add", help="add a moderator, or set a moderator's password (ends their sessions)"
    )
    p.add_argument("username")
    p.add_argument("--password", help="the password (default: asked, or read from standard input)")
    _add_db(p)
    p.set_defaults(func=cmd_user_add)
    p = user_sub.add_parser("remove", help="remove a moderator and end their sessions")
    p.add_argument("username")
    _add_db(p)
    p.set_defaults(func=cmd_user_remove)

    p = sub.add_parser("collect", help="run an event file's live sources headless until interrupted")
    p.add_argument("--config", required=True, help="the event file (TOML)")
    _add_db(p)
    p.set_defaults(func=cmd_collect)

    p = sub.add_parser("sources", help="list the networks and what each needs")
    p.set_defaults(func=cmd_sources)

    p = sub.add_parser("status", help="show each live source's state, last error and next try")
    p.add_argument("--event", help="only this event (also lists its recorded gaps)")
    _add_db(p)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("events", help="list the events in the database")
    _add_db(p)
    p.set_defaults(func=cmd_events)
    return parser


def tune_gc() -> None:
    """Run the cyclic garbage collector less often than Python's default (every 700 new
    container objects). Messages are freed by reference counting; what the collector
    found was time: each run walks every young object, and every tenth one the older
    ones too, so at a few new objects per message it took a fifth of a fast replay's
    time (bench/replay_live.py, 200,000 messages into SQLite through Redis and the hub:
    32,000 messages/s with the default, 40,000 with this)."""
    gc.set_threshold(100_000, 50, 100)


def main(argv: Sequence[str] | None = None) -> int:
    tune_gc()
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else config.setting("log_level"),
        format="%(levelname)s %(name)s: %(message)s",
    )
    # Migrations are routine: say nothing about them unless asked to be verbose.
    logging.getLogger("alembic").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    if getattr(args, "part_size", None) is not None and args.part_size < 1:
        parser.error("--part-size must be at least 1")
    if getattr(args, "speed", 0) < 0:
        parser.error("--speed must be 0 (no waiting) or more")
    try:
        return int(args.func(args))
    except DatabaseFailed as exc:
        return _database_failed(exc)
    except BackchannelError as exc:
        print(f"backchannel: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        return EXIT_OK
    except KeyboardInterrupt:
        print("backchannel: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        # The one translation of database errors for every command: those the writers
        # gave up on arrive as DatabaseFailed, with their count; any other (opening the
        # store, reading for an export or a status) arrives here as the driver raised it.
        from backchannel import dbretry

        if not dbretry.is_database_error(exc):
            raise
        return _database_failed(DatabaseFailed(dbretry.describe(exc)))


def _database_failed(exc: DatabaseFailed) -> int:
    stored = "" if exc.stored is None else f"; {exc.stored:,} messages stored before it (a rerun skips them)"
    print(f"backchannel: the database failed: {exc.reason}{stored}", file=sys.stderr)
    return EXIT_DATABASE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
