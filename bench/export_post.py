"""Export speed: the numbered follow-up post of 100,000 messages.

    .venv/bin/python bench/export_post.py [--count 100000]

Prints the time to render Markdown from messages in memory, and the time of the
whole `backchannel export` path: reading them from a SQLite store, then rendering.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backchannel import export
from backchannel.bulk import bulk_ingest
from backchannel.sources.archive import read_archive
from backchannel.store import Store
from bench.common import machine, write_session


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        session = write_session(Path(tmp) / "session.jsonl", args.count)
        store = Store(f"sqlite:///{tmp}/bench.db")
        bulk_ingest(store, "bench", read_archive(session, format="jsonl", event="bench"))
        start = time.perf_counter()
        messages = list(store.messages("bench", order="newest"))
        read = time.perf_counter() - start
        renders = []
        for _ in range(args.runs):
            start = time.perf_counter()
            parts = export.render_post(messages, fmt="markdown")
            renders.append(time.perf_counter() - start)
        size = sum(len(p) for p in parts) / 2**20
        best = min(renders)
        print(f"read {args.count:,} messages from SQLite: {read:.2f} s")
        print(f"render Markdown ({size:.0f} MiB): best {best:.2f} s of {args.runs}")
        print(f"export end to end (read + render): {read + best:.2f} s")
        store.close()


if __name__ == "__main__":
    main()
