"""Manual retweets: "RT @handle: text" copies, folded onto the message they copy.

Native retweets and boosts point at their original explicitly (`repost_of`); manual
copies only quote it, often truncated or with a comment in front or behind, so they
are matched by author and by their first words.
"""

from __future__ import annotations

import re

_MANUAL_RT = re.compile(r"\bRT\s+@(?P<handle>[A-Za-z0-9_]{1,30})\b:?\s*(?P<quoted>.+)", re.DOTALL)
_WORD = re.compile(r"\w+")

# Enough words to tell two messages apart, few enough to survive truncation.
MATCH_WORDS = 8
MIN_MATCH_WORDS = 4


def manual_retweet(text: str) -> tuple[str, str] | None:
    """The (handle, quoted text) of a manual retweet, or None."""
    match = _MANUAL_RT.search(text)
    if not match:
        return None
    return match.group("handle"), match.group("quoted")


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def quotes(quoted: str, original: str) -> bool:
    """Whether `quoted` (from a manual RT) begins like `original`."""
    a, b = _words(quoted), _words(original)
    n = min(len(a), len(b), MATCH_WORDS)
    if n < MIN_MATCH_WORDS or a[: n - 1] != b[: n - 1]:
        return False
    # The last compared word may have been cut short by truncation.
    last_a, last_b = a[n - 1], b[n - 1]
    return last_a.startswith(last_b) or last_b.startswith(last_a)
