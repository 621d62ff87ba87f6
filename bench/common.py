"""Helpers shared by the benchmark scripts: machine description, synthetic sessions."""

from __future__ import annotations

import os
import platform
import resource
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

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
