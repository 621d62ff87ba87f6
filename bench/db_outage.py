"""A database outage during `backchannel replay --speed 0`, on a throwaway PostgreSQL.

    .venv/bin/python bench/db_outage.py [--count 50000] [--down 5] [--crash] [--never-back]

Starts a PostgreSQL cluster of its own (tests/faults/services.py), replays `count`
messages into it, and once a fifth are stored stops the server (`--crash`: kill -9)
for `down` seconds. Prints the command's exit status and time, how many times it
retried, and whether every message is stored once with sequence numbers 1..count.
`--never-back` leaves the server down: the command should give up after
BACKCHANNEL_DB_RETRY seconds with exit status 3 and the count it stored.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "faults")]

from services import Postgres  # noqa: E402
from test_fault_cli import assert_exactly_once, stored_count, wait_for_count  # noqa: E402

from bench.common import machine, write_session  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50_000)
    parser.add_argument("--down", type=float, default=5.0, help="seconds the server stays down")
    parser.add_argument("--crash", action="store_true", help="kill -9 the server instead of stopping it")
    parser.add_argument("--never-back", action="store_true", help="leave it down: the command must give up")
    args = parser.parse_args()
    print(machine())
    cluster = Postgres()
    cluster.start()
    try:
        url = cluster.new_database()
        archive = write_session(Path(tempfile.mkdtemp()) / "outage.jsonl", args.count)
        command = [sys.executable, "-m", "backchannel", "replay", str(archive), "--event", "fault"]
        proc = subprocess.Popen(
            [*command, "--speed", "0", "--db", url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        started = time.monotonic()
        at = wait_for_count(url, "fault", args.count // 5, proc)
        cluster.kill() if args.crash else cluster.stop()
        down_at = time.monotonic()
        if not args.never_back:
            time.sleep(args.down)
            cluster.start()
        out, err = proc.communicate(timeout=300)
        ended = time.monotonic()
        how = "killed (-9)" if args.crash else "stopped"
        back = "never restarted" if args.never_back else f"down {args.down:g} s"
        print(f"server {how} at {at:,} stored, {back}")
        print(
            f"exit status {proc.returncode}, {ended - started:.1f} s in all, {ended - down_at:.1f} s after the outage began"
        )
        print(f"retries logged: {err.count('the database is unavailable')}")
        print("output:", (out.strip() or err.strip().splitlines()[-1]))
        if args.never_back:
            cluster.start()
            print(f"stored: {stored_count(url, 'fault'):,}")
        else:
            assert_exactly_once(url, "fault", args.count)
            print(f"all {args.count:,} stored once; seqs 1..{args.count:,} without a gap")
    finally:
        cluster.close()


if __name__ == "__main__":
    main()
