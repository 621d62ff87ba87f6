"""Helpers shared by the benchmark scripts: machine description, synthetic sessions."""

from __future__ import annotations

import asyncio
import os
import platform
import resource
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from aiohttp import web

WORDS = (
    "social learning is all about connections not tools #slz great point @joningham see "
    "http://example.com/article agree the webinar was brilliant #trulondon how do we start"
).split()


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, {platform.system()}"


def max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic_record(i: int, start: datetime = datetime(2026, 6, 22, 12, tzinfo=UTC)) -> dict[str, object]:
    text = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(12 + i % 9))
    handle = f"user{i % 5000}"
    return {
        "network": "x",
        "network_id": str(10**12 + i),
        "uri": f"https://x.com/i/status/{10**12 + i}",
        "author_handle": handle,
        "author_name": f"User {i % 5000}",
        "text": text,
        "created_at": (start + timedelta(milliseconds=37 * i)).isoformat().replace("+00:00", "Z"),
        "permalink": f"https://x.com/{handle}/status/{10**12 + i}",
        "hashtags": ["slz"],
        "mentions": ["joningham"] if i % 3 == 0 else [],
        "links": ["http://example.com/article"] if i % 4 == 0 else [],
    }


def write_session(path: Path, count: int) -> Path:
    """A JSONL session of `count` messages in the project's own format."""
    with path.open("wb") as fh:
        for i in range(count):
            fh.write(orjson.dumps(synthetic_record(i)) + b"\n")
    return path


# -- servers in subprocesses -----------------------------------------------------------------
#
# A bench keeps its server and its load generator in separate processes, so they do not
# share a GIL. The server side is the script itself in a `--serve` mode: it prints
# "PORT n" once it listens and serves until its stdin closes.


async def serve_until_stdin_closes(app: web.Application, port: int = 0) -> None:
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    # A deep listen backlog: load generators connect hundreds of clients at once.
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=4096)
    await site.start()
    print(f"PORT {runner.addresses[0][1]}", flush=True)
    try:
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    finally:
        await runner.cleanup()


@dataclass
class Served:
    process: subprocess.Popen[str]
    port: int


@contextmanager
def served(
    *commands: list[str], env: dict[str, str] | None = None, stop_timeout: float = 15
) -> Iterator[list[Served]]:
    """Start each command (a bench script's `--serve` mode); stop them all on leaving."""
    processes = [
        subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        for command in commands
    ]
    try:
        servers = []
        for process in processes:
            assert process.stdout is not None
            line = process.stdout.readline()
            if not line.startswith("PORT "):
                raise SystemExit(f"a server did not start: {line!r}")
            servers.append(Served(process, int(line.split()[1])))
        yield servers
    finally:
        for process in processes:
            if process.stdin is not None:
                process.stdin.close()  # the server's signal to stop
        for process in processes:
            try:
                process.wait(timeout=stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
