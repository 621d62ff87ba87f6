"""Rule-based question detection for the moderators' question queue.

A message is a question when, once URLs are removed, it has a question mark, or when
its first real word (after leading @mentions, hashtags, "RT" and punctuation) is an
interrogative opening: "Will we lose skills…" asks without a question mark. Pure and
cheap: it runs on every ingested message.
"""

from __future__ import annotations

import re

_URL = re.compile(r"https?://\S+|www\.\S+", re.IGNORECASE)

WH_WORDS = frozenset("who whom whose what which when where why how anyone anybody".split())
# An auxiliary opens a question only when a subject follows it: "Will we lose…?" asks,
# "Will be following up…" and "Do check out…" do not. Negative contractions are left
# out: "Haven't seen that one" and "Can't wait" are statements, and questions that
# open with them nearly always carry a question mark.
AUXILIARIES = frozenset(
    "is are am was were do does did can could will would shall should has have had may might".split()
)
NOT_A_SUBJECT = frozenset(
    """
    be been being seen done got gotten had just also not never always probably definitely really still
    try see check join follow post blog update keep have take look come let
    """.split()
)


# What a reader skips before the first word: whitespace, "RT", @mentions, #hashtags and
# punctuation. The skip is possessive (`*+`): it takes all it can and never gives any
# back. A plain `*` around alternatives that overlap (a dot is punctuation and part of a
# hashtag, and `[...]+` repeats inside the `*`) let the regex engine try every way of
# splitting a run of dots when no word followed: exponential time, seconds for a
# 30-character post. Giving back could only ever yield a one-letter word, "RT" or a
# quote mark as the first word, none of which decides anything below, so whether a text
# is a question is unchanged; the match is now linear in the text's length.
_OPENING = re.compile(
    r"(?:\s|RT\b:?|[@#][\w.@-]+:?|[-–—:;,.>|\"'“”‘’()]+)*+([A-Za-z']+)(?:[^A-Za-z']+([A-Za-z']+))?",
    re.IGNORECASE,
)


def opening_words(text: str) -> list[str]:
    """The first two words a reader would read, past mentions, hashtags and RT markers."""
    match = _OPENING.match(text)
    if not match:
        return []
    return [w.lower() for w in match.groups() if w]


def first_word(text: str) -> str:
    words = opening_words(text)
    return words[0] if words else ""


def is_question(text: str) -> bool:
    # The common case, no question mark and no URL, needs neither substitution.
    if "?" in text and "?" in (_URL.sub(" ", text) if "://" in text or "www." in text else text):
        return True
    match = _OPENING.match(text)
    if not match:
        return False
    first, second = match.groups()
    first = first.lower()
    if first in WH_WORDS:
        return True
    return first in AUXILIARIES and second is not None and second.lower() not in NOT_A_SUBJECT
