"""Import speed: the project's JSONL into SQLite and PostgreSQL, memory watched.

    .venv/bin/python bench/ingest.py [--count 1000000] [--postgres URL]

Prints messages/s for each store and the peak resident memory after a tenth of the
import and at its end (flat memory means the two are close).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backchannel.bulk import bulk_ingest
from backchannel.sources.archive import read_archive
from backchannel.store import Store
from bench.common import machine, max_rss_mib, write_session


def run(url: str, session: Path, count: int, label: str) -> None:
    store = Store(url)
    rss: list[float] = []
    seen = 0

    def items():  # type: ignore[no-untyped-def]
        nonlocal seen
        for item in read_archive(session, format="jsonl", event="bench"):
            seen += 1
            if seen == count // 10:
                rss.append(max_rss_mib())
            yield item

    start = time.perf_counter()
    stats = bulk_ingest(store, "bench", items())
    elapsed = time.perf_counter() - start
    rss.append(max_rss_mib())
    assert stats.added == count, stats
    print(
        f"{label:<11} {count:>9,} messages in {elapsed:6.2f} s = {count / elapsed:>9,.0f} messages/s"
        f"   peak RSS {rss[0]:.0f} MiB at 10%, {rss[-1]:.0f} MiB at 100%"
    )
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        session = write_session(Path(tmp) / "session.jsonl", args.count)
        print(f"session: {args.count:,} messages, {session.stat().st_size / 2**20:.0f} MiB of JSONL")
        run(f"sqlite:///{tmp}/bench.db", session, args.count, "SQLite")
        if not args.skip_postgres:
            import psycopg

            name = f"bc_bench_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(args.postgres, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            try:
                run(args.postgres.rsplit("/", 1)[0] + f"/{name}", session, args.count, "PostgreSQL")
            finally:
                with psycopg.connect(args.postgres, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
