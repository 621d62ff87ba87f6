"""TAGS (Twitter Archiving Google Sheet) "Archive" rows to `Message`s.

Pure: no I/O; a row is a dict as `csv.DictReader` gives it. TAGS stored Twitter API
v1.1 search results, one row per tweet: `id_str, from_user, text, created_at, time,
…, in_reply_to_status_id_str, …, status_url, entities_str`.

Sheets turns long numbers into floats: `id_str` often reads `1.26426E+18`, or the
same float written out in full with its last digits zeroed. `status_url` is text,
so the id is taken from it first and `id_str` is only trusted when the URL is
missing. TAGS keeps no retweet reference: a retweet is an ordinary "RT @…" message.
"""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import orjson
from linkify_it import LinkifyIt

from backchannel.core.models import Message, Network
from backchannel.core.record import in_utc, parse_time
from backchannel.core.twarc import canonical_uri, permalink
from backchannel.errors import PayloadError

_STATUS_URL_ID = re.compile(r"/status(?:es)?/(\d+)")
# Twitter's hashtag and mention rules, near enough: a tag starts after a non-word
# character, may hold letters, digits and underscores, and is not all digits.
_HASHTAG = re.compile(r"(?<![\w&])[#＃](\w*[^\W\d]\w*)")
_MENTION = re.compile(r"(?<![\w@])[@＠](\w{1,15})")
_linkify = LinkifyIt()


def tweet_id(row: Mapping[str, Any]) -> str:
    """The tweet's id, recovered from `status_url` when Sheets has mangled `id_str`."""
    url = row.get("status_url") or ""
    found = _STATUS_URL_ID.search(url) if isinstance(url, str) else None
    if found:
        return found.group(1)
    raw_id = (row.get("id_str") or "").strip()
    if raw_id.isdigit():
        return raw_id
    if raw_id:
        raise PayloadError(f"id_str {raw_id!r} was mangled by the spreadsheet and status_url has no id")
    raise PayloadError("missing id_str and status_url")


def parse_twitter_time(value: Any) -> datetime:
    """`Sat May 23 18:01:55 +0000 2020` (v1.1), the older RFC 2822 form, or ISO 8601."""
    if not isinstance(value, str) or not value.strip():
        raise PayloadError("missing created_at")
    value = value.strip()
    try:
        return in_utc(datetime.strptime(value, "%a %b %d %H:%M:%S %z %Y"), value)
    except ValueError:
        pass
    if "," in value[:5]:
        try:
            parsed = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            pass
        else:
            return in_utc(parsed, value) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    try:
        return parse_time(value)
    except PayloadError:
        raise PayloadError(f"created_at is not a Twitter time: {value!r:.80}") from None


def _entities(row: Mapping[str, Any]) -> Mapping[str, Any] | None:
    text = row.get("entities_str")
    if not isinstance(text, str) or not text.strip():
        return None
    try:
        entities = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return entities if isinstance(entities, Mapping) else None


def _values(entities: Mapping[str, Any], key: str, *fields: str) -> tuple[str, ...]:
    items = entities.get(key)
    values: list[str] = []
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, Mapping):
            continue
        value = next((item[f] for f in fields if isinstance(item.get(f), str) and item[f]), None)
        if value and value not in values:
            values.append(value)
    return tuple(values)


def _unique(values: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def _scanned(text: str) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """Hashtags, mentions and links found in the text itself (when `entities_str` is unusable)."""
    links = [m.url for m in _linkify.match(text) or () if m.schema in ("http:", "https:")]
    return (
        _unique(_HASHTAG.findall(text)),
        _unique(_MENTION.findall(text)),
        _unique(links),
    )


def cells(text: str, delimiter: str) -> list[str]:
    """The cells of one CSV record (which may span lines); [] for a blank one. Raises
    csv.Error for text that is not one record."""
    # A one-line record (nearly all) needs no file-like wrapper: half the cost.
    lines = (text,) if text.count("\n") <= 1 else io.StringIO(text)
    rows = list(csv.reader(lines, delimiter=delimiter))
    if len(rows) > 1:
        raise csv.Error(f"the record reads as {len(rows)} rows")
    return [cell.rstrip("\r") for cell in rows[0]] if rows else []


def has_all_cells(line: str, header: Sequence[str], delimiter: str) -> bool:
    """Whether `line`, read on its own, is one whole record with the header's number of
    cells: no quoted cell left open at its end (CSV reads a quote inside an unquoted cell
    as a character, so a line may hold an odd number of quotes and still be whole)."""
    try:
        rows = list(csv.reader((line,), delimiter=delimiter, strict=True))
    except csv.Error:
        return False
    return len(rows) == 1 and len(rows[0]) == len(header)


def unclosed_quote(start: int, end: int, before: str) -> str:
    """Why the lines `start`..`end` of a record whose quote never closed are left out."""
    span = f"line {start}" if end == start else f"lines {start}-{end}"
    return f"a quoted cell opened here never closes before {before}: {span} left out"


def starts_row(line: str, header: Sequence[str], delimiter: str) -> bool:
    """Whether `line`, read on its own, is a whole TAGS row: the header's number of cells,
    an author, a tweet id and a time.

    A quoted cell that never closes swallows the lines after it, and the next quote
    closes it in the middle of another row: the two rows merge into one record, stored
    with the first row's author and the second's id, and the second row is lost. A line
    inside a quoted cell that reads as a row of its own shows where that happened;
    tweet text almost never has the header's number of cells, a status URL and a
    Twitter time in the right columns.
    """
    try:
        found = cells(line, delimiter)
    except csv.Error:
        return False
    if len(found) != len(header):
        return False
    row = dict(zip(header, found, strict=True))
    if not row.get("from_user", "").strip():
        return False
    try:
        tweet_id(row)
        parse_twitter_time(row.get("created_at"))
    except PayloadError:
        return False
    return True


def message_from_row(row: Mapping[str, Any], *, event: str = "") -> Message:
    """One TAGS archive row."""
    handle = row.get("from_user")
    if not isinstance(handle, str) or not handle.strip():
        raise PayloadError("missing from_user")
    handle = handle.strip().lstrip("@")
    text = row.get("text")
    if not isinstance(text, str):
        raise PayloadError("missing text")
    # v1.1 text arrives with &, < and > escaped, and TAGS stored it as it came.
    text = html.unescape(text)
    status_id = tweet_id(row)
    entities = _entities(row)
    if entities is not None:
        hashtags = _values(entities, "hashtags", "text")
        mentions = _values(entities, "user_mentions", "screen_name")
        links = _values(entities, "urls", "expanded_url", "url")
    else:
        hashtags, mentions, links = _scanned(text)
    reply_id = (row.get("in_reply_to_status_id_str") or "").strip()
    user_name = row.get("user_name")
    return Message(
        network=Network.X,
        network_id=status_id,
        uri=canonical_uri(status_id),
        author_handle=handle,
        author_name=user_name.strip() if isinstance(user_name, str) and user_name.strip() else handle,
        text=text,
        created_at=parse_twitter_time(row.get("created_at")),
        event=event,
        permalink=permalink(handle, status_id),
        # A reply id mangled by Sheets cannot be recovered (no URL column for it): dropped.
        reply_to=canonical_uri(reply_id) if reply_id.isdigit() else None,
        hashtags=hashtags,
        mentions=mentions,
        links=links,
        raw=orjson.dumps({k: v for k, v in row.items() if isinstance(k, str)}).decode(),
    )
