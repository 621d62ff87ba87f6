"""Patterns that see stranger text run in linear time (issue 10's regex audit).

The question detector has its own tests (test_questions.py); these cover the other
super-linear patterns the audit found: the URL edge trim in `richtext.safe_href`, the
dashboard's trailing-punctuation trim of a URL token (web/static/dom.js) and the tag
stripping of YouTube's error messages.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from backchannel.core.richtext import safe_href

STATIC = Path(__file__).resolve().parent.parent / "web" / "static"
# Each input below took seconds before the fix and takes milliseconds after; the bound
# is generous for a loaded 2-core machine.
BOUND_SECONDS = 0.5


def test_safe_href_trims_the_edges_of_a_url_in_linear_time() -> None:
    spaced = "http://a.example/" + " " * 20_000 + "b"
    start = time.perf_counter()
    assert safe_href(spaced) is None  # whitespace inside a URL: refused, as before
    assert time.perf_counter() - start < BOUND_SECONDS


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (" \t https://a.example/x \x00\n", "https://a.example/x"),
        ("\u3000http://a.example/\u00a0", "http://a.example/"),
        ("https://a.example/\u200b", None),
        ("\x01javascript:alert(1)", None),
    ],
)
def test_safe_href_still_trims_whitespace_and_controls_at_the_edges(url: str, expected: str | None) -> None:
    assert safe_href(url) == expected


_TRAILING = """
import { trailingLength } from "./dom.js";
const cases = [["http://x.example/a).", 2], ["http://x.example/a", 0], ["http://x.example/»\\"", 2]];
for (const [token, want] of cases) {
  if (trailingLength(token) !== want) throw new Error(`${token}: ${trailingLength(token)}`);
}
const token = "http://x.example/" + ".".repeat(30000) + "a";
const start = performance.now();
trailingLength(token);
console.log((performance.now() - start) / 1000);
"""


def test_dashboard_trims_a_url_tokens_trailing_punctuation_in_linear_time() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (it runs the dashboard's dom.js outside a browser)")
    done = subprocess.run(
        [node, "--input-type=module", "-e", _TRAILING],
        cwd=STATIC,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) < BOUND_SECONDS


def test_a_youtube_error_message_loses_its_tags_in_linear_time() -> None:
    from backchannel.core.youtube import error_message

    start = time.perf_counter()
    assert error_message({"error": {"message": "<" * 20_000}}) == "<" * 300
    assert time.perf_counter() - start < BOUND_SECONDS
    quota = {"error": {"message": 'over your <a href="https://q.example">quota</a>.'}}
    assert error_message(quota) == "over your quota."
