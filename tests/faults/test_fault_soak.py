"""The soak in short: bench/soak.py for three minutes, as CI runs it.

A real server process (SQLite), wall clients that read everything and leave and
resume now and then, stalled ones that never read, a steady stream: nothing may be
lost or duplicated, every stalled client must be cut, and the server's memory must
stay bounded. The client count is what a loaded 2-core CI machine carries beside
the server (the 30-minute run with 1,000 clients is in bench/RESULTS.md).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).resolve().parents[2] / "bench" / "soak.py"
MINUTES = 3
# Connecting, the last stall check and the drain come on top of the minutes.
TIMEOUT = MINUTES * 60 + 120


def test_three_minutes_of_steady_traffic_lose_nothing_and_keep_memory_bounded() -> None:
    command = [
        sys.executable, str(SOAK), "--minutes", str(MINUTES), "--clients", "200", "--rate", "10",
        "--stalled", "4", "--churn", "60",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr[-3000:]
    assert "; lost 0, duplicates 0;" in out, out
    assert "(refused 0)" in out, out
    assert "memory bounded: yes" in out, out
    assert out.rstrip().endswith("soak: OK"), out
