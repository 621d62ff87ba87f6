"""Rule-based question detection for the moderators' question queue.

A message is a question when, once URLs are removed, it has a question mark, or when
its first real word (after leading @mentions, hashtags, "RT" and punctuation) is an
interrogative opening: "Will we lose skills…" asks without a question mark. Pure and
cheap: it runs on every ingested message.
"""

from __future__ import annotations

import re

_URL = re.compile(r"https?://\S+|www\.\S+", re.IGNORECASE)
_LEADING_NOISE = re.compile(r"^(?:\s|RT\b:?|[@#][\w.@-]+:?|[-–—:;,.>|\"'“”‘’()]+)+", re.IGNORECASE)
_FIRST_WORD = re.compile(r"[A-Za-z']+")

INTERROGATIVE_OPENINGS = frozenset(
    """
    who whom whose what which when where why how
    is are am was were isn't aren't wasn't weren't
    do does did don't doesn't didn't
    can could can't couldn't will would won't wouldn't shall should shouldn't
    has have had hasn't haven't may might
    anyone anybody
    """.split()
)


def first_word(text: str) -> str:
    """The first word a reader would read, past mentions, hashtags and RT markers."""
    rest = _LEADING_NOISE.sub("", text)
    match = _FIRST_WORD.match(rest)
    return match.group(0).lower() if match else ""


def is_question(text: str) -> bool:
    without_urls = _URL.sub(" ", text)
    if "?" in without_urls:
        return True
    return first_word(without_urls) in INTERROGATIVE_OPENINGS
