"""Archive files to messages: the I/O edge of the importers.

Reads the project's own JSONL (`core/record.py`), Mastodon statuses (a JSON array
or one status per line), twarc2 JSONL and TAGS CSV, and yields a `Message` per
post or a `Rejected` per record that could not be read; the records around a bad
one are kept. Line-based formats are streamed line by line, so memory stays flat
however long the file; only a Mastodon JSON *array* is loaded whole (JSON arrays
cannot be read incrementally with orjson). Normalising is left to the pure
`core` modules; this module only opens, splits and reports.
"""

from __future__ import annotations

import csv
import os
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import orjson

from backchannel.core import tags
from backchannel.core.mastodon import messages_from_status
from backchannel.core.models import Message
from backchannel.core.record import message_from_record
from backchannel.core.twarc import messages_from_twarc_page
from backchannel.errors import PayloadError

FORMATS = ("jsonl", "mastodon", "twarc", "tags")

Progress = Callable[[int], None]

# How many lines pass between two progress reports: often enough for a smooth bar,
# rarely enough to cost nothing next to parsing.
_PROGRESS_EVERY = 4096
_SNIFF_LINES = 20
_SNIFF_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that could not be read: where it is (`line 12`, `item 3`,
    `line 4, tweet 1234`) and why."""

    where: str
    reason: str


PathLike = str | os.PathLike[str]


def _reason(exc: Exception, line: bytes = b"") -> str:
    if isinstance(exc, orjson.JSONDecodeError):
        # A record cut short (a crash mid-write) fails at its last character, often on the
        # newline; say so rather than quote the decoder's view of a second line.
        if line and exc.pos >= len(line.rstrip().decode("utf-8", errors="replace")) - 1:
            return "truncated JSON: the line ends inside the record"
        return f"invalid JSON: {exc.msg} at character {exc.pos + 1}"
    return str(exc) or type(exc).__name__


# Errors that mean "this record is bad", as opposed to a bug or an I/O failure.
_RECORD_ERRORS = (PayloadError, ValueError, TypeError)


def _skip_bom(fh: IO[bytes]) -> None:
    """Step over a UTF-8 byte order mark (Windows tools and Sheets' exports write one)."""
    if fh.read(3) != b"\xef\xbb\xbf":
        fh.seek(0)


# -- sniffing --------------------------------------------------------------------------


def _classify(obj: Any) -> str | None:
    if isinstance(obj, list):
        return _classify(obj[0]) if obj else None
    if not isinstance(obj, dict):
        return None
    if "network" in obj and "network_id" in obj:
        return "jsonl"
    if "account" in obj and ("uri" in obj or "content" in obj):
        return "mastodon"
    if "data" in obj and ("includes" in obj or "meta" in obj or "__twarc" in obj):
        return "twarc"
    if "author_id" in obj and "data" not in obj:
        return "twarc"
    return None


def _is_tags_header(line: str) -> bool:
    columns = {c.strip().strip('"') for c in line.replace("\t", ",").split(",")}
    return "id_str" in columns and "from_user" in columns


def _classify_head(head: bytes) -> str | None:
    """A guess from the raw start of a file whose first records would not parse."""
    if b'"network_id"' in head and b'"network"' in head:
        return "jsonl"
    if b'"account"' in head and (b'"uri"' in head or b'"content"' in head):
        return "mastodon"
    if b'"author_id"' in head or (b'"data"' in head and (b'"includes"' in head or b'"__twarc"' in head)):
        return "twarc"
    return None


def sniff_format(path: PathLike) -> str:
    """The archive format of `path`, one of FORMATS, judged from its first records."""
    with open(path, "rb") as fh:
        head = fh.read(_SNIFF_BYTES)
        text = head.decode("utf-8-sig", errors="replace").lstrip()
        if not text:
            raise PayloadError(f"{os.fspath(path)} is empty")
        if _is_tags_header(text.splitlines()[0]):
            return "tags"
        if text.startswith("["):
            found = _classify_head(head)
        else:
            found = None
            fh.seek(0)
            _skip_bom(fh)
            tried = 0
            for line in fh:
                if not line.strip():
                    continue
                tried += 1
                try:
                    found = _classify(orjson.loads(line))
                except orjson.JSONDecodeError:
                    continue
                if found or tried >= _SNIFF_LINES:
                    break
            found = found or _classify_head(head)
    if found is None:
        raise PayloadError(
            f"cannot tell the format of {os.fspath(path)}: expected backchannel JSONL (network, "
            "network_id), Mastodon statuses (account, uri), twarc2 JSONL (data and includes, or "
            "author_id) or a TAGS CSV (id_str, from_user); name it with --format"
        )
    return found


# -- readers ---------------------------------------------------------------------------


def _lines(fh: IO[bytes], on_progress: Progress | None) -> Iterator[tuple[int, bytes]]:
    """Numbered non-blank lines, reporting bytes consumed as it goes."""
    for number, line in enumerate(fh, 1):
        if on_progress is not None and not number % _PROGRESS_EVERY:
            on_progress(fh.tell())
        if not line.isspace():
            yield number, line
    if on_progress is not None:
        on_progress(fh.tell())


def _read_jsonl(fh: IO[bytes], event: str, on_progress: Progress | None) -> Iterator[Message | Rejected]:
    # The hot path of a big import, so `_lines` is inlined: parse, convert, yield.
    loads = orjson.loads
    convert = message_from_record
    for number, line in enumerate(fh, 1):
        if on_progress is not None and not number % _PROGRESS_EVERY:
            on_progress(fh.tell())
        if line.isspace():
            continue
        try:
            item: Message | Rejected = convert(loads(line), event=event)
        except _RECORD_ERRORS as exc:
            item = Rejected(f"line {number}", _reason(exc, line))
        yield item
    if on_progress is not None:
        on_progress(fh.tell())


def _statuses(obj: Any, event: str, where: str | None) -> Iterator[Message | Rejected]:
    """A decoded status, or a list of them (a saved timeline page), as messages."""
    items = obj if isinstance(obj, list) else [obj]
    for position, status in enumerate(items, 1):
        at = where or ""
        if isinstance(obj, list):
            at = f"{where}, item {position}" if where else f"item {position}"
        try:
            found: list[Message] | Rejected = messages_from_status(status, event=event)
        except _RECORD_ERRORS as exc:
            found = Rejected(at, _reason(exc))
        if isinstance(found, Rejected):
            yield found
        else:
            yield from found


def _first_line(fh: IO[bytes]) -> bytes:
    origin = fh.tell()
    line = b""
    for line in fh:
        if not line.isspace():
            break
    fh.seek(origin)
    return line


def _is_whole_json(line: bytes) -> bool:
    try:
        orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return True


def _read_mastodon(fh: IO[bytes], event: str, on_progress: Progress | None) -> Iterator[Message | Rejected]:
    first = _first_line(fh)
    # A first line that is JSON on its own means one status (or one saved page) per
    # line; an array spread over many lines has to be parsed whole.
    if first.lstrip().startswith(b"[") and not _is_whole_json(first):
        data = fh.read()
        if on_progress is not None:
            on_progress(fh.tell())
        try:
            statuses = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            yield Rejected("whole file", f"the JSON array does not parse: {_reason(exc)}")
            return
        yield from _statuses(statuses, event, None)
        return
    for number, line in _lines(fh, on_progress):
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            yield Rejected(f"line {number}", _reason(exc, line))
            continue
        yield from _statuses(obj, event, f"line {number}")


def _read_twarc(fh: IO[bytes], event: str, on_progress: Progress | None) -> Iterator[Message | Rejected]:
    for number, line in _lines(fh, on_progress):
        try:
            messages, problems = messages_from_twarc_page(orjson.loads(line), event=event)
        except _RECORD_ERRORS as exc:
            yield Rejected(f"line {number}", _reason(exc, line))
            continue
        yield from messages
        for problem in problems:
            tweet, _, reason = problem.partition(": ")
            yield Rejected(f"line {number}, {tweet}", reason)


def _decoded(fh: IO[bytes], on_progress: Progress | None) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(fh, 1):
        if on_progress is not None and not number % _PROGRESS_EVERY:
            on_progress(fh.tell())
        yield number, line.decode("utf-8", errors="replace")
    if on_progress is not None:
        on_progress(fh.tell())


# A CSV record may span lines (a quoted cell holding newlines), but one still open this
# many lines on is a quote that never closes: its first line is rejected and reading
# goes on from the second, so the rest of the file is not swallowed.
MAX_RECORD_LINES = 100


def _read_tags(fh: IO[bytes], event: str, on_progress: Progress | None) -> Iterator[Message | Rejected]:
    first = _first_line(fh).decode("utf-8", errors="replace")
    # Sheets' "copy" gives tab-separated text, its CSV download commas.
    delimiter = "\t" if first.count("\t") > first.count(",") else ","
    source = _decoded(fh, on_progress)
    header: list[str] = []
    for _, line in source:
        if line.strip():
            header = [name.strip() for name in tags.cells(line, delimiter)]
            break
    # Lines to read again before the file's next ones (after a record was cut short).
    again: deque[tuple[int, str]] = deque()

    def lines() -> Iterator[tuple[int, str]]:
        while True:
            if again:
                yield again.popleft()
            elif (line := next(source, None)) is not None:
                yield line
            else:
                return

    # Records are split by hand, not by csv.reader over the whole file, to notice a quoted
    # cell that never closes (tags.starts_row) and to name the line each record starts on.
    pending: list[tuple[int, str]] = []
    quotes = 0
    for number, line in lines():
        if pending and tags.starts_row(line, header, delimiter):
            yield _unclosed(pending, f"line {number} reads as a row of its own")
            pending, quotes = [], 0
        pending.append((number, line))
        quotes += line.count('"')
        if quotes % 2 and len(pending) == 1 and tags.has_all_cells(line, header, delimiter):
            quotes = 0  # a stray quote inside an unquoted cell: a character, not an opening
        if quotes % 2 and len(pending) < MAX_RECORD_LINES:
            continue
        if quotes % 2:
            yield Rejected(
                f"line {pending[0][0]}", f"a quoted cell that never ends ({MAX_RECORD_LINES} lines on)"
            )
            again.extendleft(reversed(pending[1:]))
        else:
            yield from _tags_item(
                pending[0][0], "".join(text for _, text in pending), header, delimiter, event
            )
        pending, quotes = [], 0
    if pending:
        yield _unclosed(pending, "the file ends")


def _unclosed(pending: list[tuple[int, str]], before: str) -> Rejected:
    """A record whose quote never closed before `before`: its lines, named by the first."""
    start = pending[0][0]
    return Rejected(f"line {start}", tags.unclosed_quote(start, pending[-1][0], before))


def _tags_item(
    start: int, text: str, header: list[str], delimiter: str, event: str
) -> Iterator[Message | Rejected]:
    """The message of one record (none for a blank line), or why it has none."""
    try:
        found = tags.cells(text, delimiter)
    except csv.Error as exc:
        yield Rejected(f"line {start}", f"unreadable CSV ({exc})")
        return
    if not any(cell.strip() for cell in found):
        return
    if len(found) != len(header):
        yield Rejected(f"line {start}", f"{len(found)} cells where the header has {len(header)} columns")
        return
    try:
        yield tags.message_from_row(dict(zip(header, found, strict=True)), event=event)
    except _RECORD_ERRORS as exc:
        yield Rejected(f"line {start}", _reason(exc))


_READERS = {"jsonl": _read_jsonl, "mastodon": _read_mastodon, "twarc": _read_twarc, "tags": _read_tags}


def read_archive(
    path: PathLike,
    *,
    format: str = "auto",
    event: str = "",
    on_progress: Progress | None = None,
) -> Iterator[Message | Rejected]:
    """Messages of the archive at `path`, and a `Rejected` for each unreadable record.

    `format` is one of FORMATS or "auto" (sniffed). `event`, when given, overrides
    the event of every message. `on_progress` is called now and then with the
    number of bytes consumed so far (last with the file's size), for a progress bar.
    Blank lines are skipped silently. An unknown or unrecognisable format raises
    PayloadError at once, before any item is read.
    """
    fmt = sniff_format(path) if format == "auto" else format
    reader = _READERS.get(fmt)
    if reader is None:
        raise PayloadError(f"unknown archive format {format!r}; expected auto or one of {', '.join(FORMATS)}")
    return _opened(path, reader, event, on_progress)


def _opened(
    path: PathLike,
    reader: Callable[[IO[bytes], str, Progress | None], Iterator[Message | Rejected]],
    event: str,
    on_progress: Progress | None,
) -> Iterator[Message | Rejected]:
    with open(path, "rb") as fh:
        _skip_bom(fh)
        yield from reader(fh, event, on_progress)
