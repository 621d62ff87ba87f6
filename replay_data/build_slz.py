"""Build `replay_data/slz.jsonl` from the #slz seed: the founding example.

The seed is Jon Ingham's blog follow-up to the Social Learning Zone webinar of
Tuesday 22 June 2010 (`<repo>/../shared/seeds/002_3dd51878027c9a10.txt`). After
"Here is part 1 of all the tweets:" it lists 58 numbered tweets, NEWEST FIRST, each
as "N. <Display Name><handle>" with the text on the next line (or on the same line,
after a no-break space). The scrape runs names and handles together, and it gives no
times and no tweet ids, so:

* names and handles are split with `HANDLES`, the authors' handles (each one is also
  seen as an @mention in the texts, or is the plain Twitter handle of the name);
* times are RECONSTRUCTED: `TIMES_UTC` gives each item a hand-chosen, plausible time
  on 22 June 2010 (see `replay_data/README.md`);
* ids are synthetic but 2010-shaped, increasing with time.

Texts are kept as listed, run-together artefacts ("http://bit.ly/cxUSkB#slz",
"@BillBoorman@charlie_elise") included; only the blog's no-break spaces become plain
spaces and the ends of each line are trimmed. Run from anywhere:

    .venv/bin/python replay_data/build_slz.py          # (re)write slz.jsonl
    .venv/bin/python replay_data/build_slz.py --check  # fail if slz.jsonl is stale

Standard library and the backchannel package only; the output does not need this script.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SEED = REPO.parent / "shared" / "seeds" / "002_3dd51878027c9a10.txt"
OUT = HERE / "slz.jsonl"

EVENT = "slz"
MARKER = "Here is part 1 of all the tweets:"
END_MARKER = "Responses shortly"
COUNT = 58

# Every author's handle. A header "Abi Signorelliabisignorelli" ends with exactly one
# of these (compared exactly, case included); the display name is what comes before.
HANDLES = (
    "0neLife",  # Julian Summerhayes (a zero, not an O)
    "AlanaInness",
    "BarryFurby",
    "BillBoorman",
    "GautamGhosh",
    "IshmaelBurdeau",
    "KenMoir",
    "MitshK",  # Michelle Kaye
    "abisignorelli",
    "bhambra",  # Tony Bhambra
    "callumsaunders",
    "charlie_elise",  # Charlie Elise Duff
    "courtenayhr",
    "dhruvdevasher",
    "diginomics",  # Digital-Economics
    "fitzroyexec",  # Fitzroy Executive
    "jenniwheller",
    "joningham",
    "kategraham23",
    "martincouzins",
    "niallgavinuk",
    "stopgap",
    "surajsodha",
)

# Glyphs the scrape left in a header that are part of neither name nor handle
# (U+F8FF, a private-use icon, sits after "Callum Saunders ").
HEADER_JUNK = "\uf8ff"

# Two @mentions are run together with the next word in the listed text. The text is
# kept; only the extracted mention is cut back to the handle meant.
RUN_TOGETHER_MENTIONS = {"MitshKInteresting": "MitshK", "kenmoirmentioned": "kenmoir"}

# Reconstructed times (UTC; BST = UTC+1), by seed item number, oldest first. The seed
# gives none. "Part 1" is the newest 58 of some 150 tweets, so it opens in the second
# half of the 13:00-14:00 BST webinar; items 25-22 are its close (follow-up link,
# "thanks Jon", "Sorry I ran out of time") around 14:00 BST, and items 21-1 the
# thanks, retweets and Bill Boorman's replies of the half hour after it.
TIMES_UTC = {
    58: "12:26:38",
    57: "12:27:21",
    56: "12:28:05",
    55: "12:29:47",
    54: "12:30:12",
    53: "12:30:58",
    52: "12:31:40",
    51: "12:32:26",
    50: "12:33:03",
    49: "12:33:17",
    48: "12:34:29",
    47: "12:35:02",
    46: "12:36:44",
    45: "12:37:09",
    44: "12:37:31",
    43: "12:37:50",
    42: "12:38:55",
    41: "12:40:13",
    40: "12:40:41",
    39: "12:41:36",
    38: "12:42:02",
    37: "12:43:18",
    36: "12:44:25",
    35: "12:44:49",
    34: "12:45:57",
    33: "12:46:30",
    32: "12:46:52",
    31: "12:47:44",
    30: "12:48:39",
    29: "12:50:06",
    28: "12:51:02",
    27: "12:53:15",
    26: "12:55:48",
    25: "12:58:31",
    24: "13:00:22",
    23: "13:01:04",
    22: "13:01:58",
    21: "13:02:35",
    20: "13:03:22",
    19: "13:04:10",
    18: "13:05:03",
    17: "13:06:16",
    16: "13:07:29",
    15: "13:09:02",
    14: "13:10:24",
    13: "13:11:07",
    12: "13:12:40",
    11: "13:14:11",
    10: "13:15:19",
    9: "13:16:02",
    8: "13:17:28",
    7: "13:18:13",
    6: "13:19:37",
    5: "13:21:05",
    4: "13:23:12",
    3: "13:25:03",
    2: "13:26:21",
    1: "13:28:46",
}
DAY = "2010-06-22"

# Synthetic ids: Twitter ids of June 2010 were sequential, about 16.8 billion, and grew
# by roughly 750 a second. The first tweet gets FIRST_ID; later ones FIRST_ID plus
# ~757 per elapsed second plus a small fixed per-item wobble (always increasing).
FIRST_ID = 16812345678
IDS_PER_SECOND = 757

_ITEM = re.compile(r"^\s*(\d+)\.\s(.*)$")
_HASHTAG = re.compile(r"#(\w*[^\W\d]\w*)")  # run-together "all#slz" counts: the tag is "slz"
_MENTION = re.compile(r"@(\w+)")
_LINK = re.compile(r"https?://[^\s\u00a0]+")
_TRAILING_TAG = re.compile(r"#\w+$")  # "http://bit.ly/cxUSkB#slz": the tag is not the link's
_TRAILING_PUNCT = ".,;:!?)]'\""


@dataclass(frozen=True, slots=True)
class SeedTweet:
    number: int  # the seed's item number: 1 is the newest
    name: str
    handle: str
    text: str


def clean(line: str) -> str:
    """A listed line as text: the blog's no-break spaces as plain spaces, ends trimmed."""
    return line.replace("\u00a0", " ").strip()


def split_author(header: str) -> tuple[str, str]:
    """("Abi Signorelli", "abisignorelli") from the scraped "Abi Signorelliabisignorelli"."""
    header = clean("".join(c for c in header if c not in HEADER_JUNK))
    found = [h for h in HANDLES if header.endswith(h) and len(header) > len(h)]
    if len(found) != 1:
        raise ValueError(f"no single known handle ends the header {header!r}: {found}")
    handle = found[0]
    name = header[: -len(handle)].strip()
    if not name:
        raise ValueError(f"no display name before the handle in {header!r}")
    return name, handle


def parse_seed(seed_text: str) -> list[SeedTweet]:
    """The 58 listed tweets, as listed (newest first)."""
    lines = seed_text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == MARKER)
    except StopIteration:
        raise ValueError(f"the seed has no {MARKER!r}") from None
    tweets: list[SeedTweet] = []
    header: tuple[int, str] | None = None
    for line in lines[start + 1 :]:
        if line.strip().startswith(END_MARKER):
            break
        if not line.strip():
            continue
        item = _ITEM.match(line) if header is None else None
        if header is None:
            if item is None:
                raise ValueError(f"expected a numbered item, got {line!r}")
            number, rest = int(item.group(1)), item.group(2)
            # The header ends at the first no-break space; item 1 has its text after it.
            head, _, same_line = rest.partition("\u00a0")
            if clean(same_line):
                name, handle = split_author(head)
                tweets.append(SeedTweet(number, name, handle, clean(same_line)))
            else:
                header = (number, head)
        else:
            number, head = header
            name, handle = split_author(head)
            tweets.append(SeedTweet(number, name, handle, clean(line)))
            header = None
    if header is not None:
        raise ValueError(f"item {header[0]} has no text")
    numbers = [t.number for t in tweets]
    if numbers != list(range(1, COUNT + 1)):
        raise ValueError(f"expected items 1..{COUNT} in order, got {numbers}")
    return tweets


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def entities(text: str) -> tuple[list[str], list[str], list[str]]:
    """Hashtags (lowercase, no #), mentions (no @) and http(s) links found in the text."""
    hashtags = _unique([tag.lower() for tag in _HASHTAG.findall(text)])
    mentions = _unique([RUN_TOGETHER_MENTIONS.get(m, m) for m in _MENTION.findall(text)])
    links = []
    for url in _LINK.findall(text):
        url = _TRAILING_TAG.sub("", url).rstrip(_TRAILING_PUNCT)
        links.append(url)
    return hashtags, mentions, _unique(links)


def _time(number: int) -> datetime:
    return datetime.fromisoformat(f"{DAY}T{TIMES_UTC[number]}+00:00").astimezone(UTC)


def build_records(tweets: list[SeedTweet]) -> list[dict[str, object]]:
    """Archive records, oldest first, each checked by the project's own reader."""
    from backchannel.core.record import message_from_record, message_to_record

    if sorted(TIMES_UTC) != sorted(t.number for t in tweets):
        raise ValueError("TIMES_UTC must give a time to every seed item")
    chronological = sorted(tweets, key=lambda t: -t.number)
    first = _time(chronological[0].number)
    records: list[dict[str, object]] = []
    last_time, last_id = first, 0
    for position, tweet in enumerate(chronological):
        when = _time(tweet.number)
        if when < last_time:
            raise ValueError(f"item {tweet.number} is earlier than the item listed below it")
        elapsed = int((when - first).total_seconds())
        status_id = FIRST_ID + elapsed * IDS_PER_SECOND + (position * 7919) % 613
        if status_id <= last_id:
            raise ValueError(f"ids must increase (item {tweet.number})")
        last_time, last_id = when, status_id
        hashtags, mentions, links = entities(tweet.text)
        record: dict[str, object] = {
            "network": "x",
            "network_id": str(status_id),
            "uri": f"https://x.com/i/status/{status_id}",
            "event": EVENT,
            "author_handle": tweet.handle,
            "author_name": tweet.name,
            "text": tweet.text,
            "created_at": when.isoformat().replace("+00:00", "Z"),
            "permalink": f"https://x.com/{tweet.handle}/status/{status_id}",
            "reply_to": None,  # "@x …" replies: the parent is not known
            "repost_of": None,  # "RT @x:" in the seed are manual retweets: tweets of their own
            "hashtags": hashtags,
            "mentions": mentions,
            "links": links,
            "raw": None,
        }
        # The project's reader must accept it and give back exactly this record.
        if message_to_record(message_from_record(record)) != record:
            raise ValueError(f"item {tweet.number} does not round-trip: {record}")
        records.append(record)
    return records


def render(records: list[dict[str, object]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=Path, default=SEED, help=f"the seed text (default {SEED})")
    parser.add_argument("--out", type=Path, default=OUT, help=f"where to write (default {OUT})")
    parser.add_argument("--check", action="store_true", help="only check that --out is up to date")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))  # run as a plain script from a checkout
    text = render(build_records(parse_seed(args.seed.read_text(encoding="utf-8"))))
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is out of date: run {Path(__file__).name}", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date")
        return 0
    args.out.write_text(text, encoding="utf-8", newline="\n")
    print(f"wrote {text.count(chr(10))} records to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
