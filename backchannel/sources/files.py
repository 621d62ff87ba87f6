"""A file that another program appends to, read as it grows: backchannel's own JSONL
(`core/record.py`) or a TAGS-style CSV (`core/tags.py`).

Polled, not watched: a stat and a read every two seconds cost nothing and work on every
filesystem (network mounts and containers included, where inotify does not). The cursor
is the byte offset just past the last complete record consumed, with the line count
there (to name bad lines) and a fingerprint of the file's first bytes. A last line
without its newline is still being written: it waits. A file shorter than the offset,
or whose first bytes changed, was truncated or replaced: it is read again from the
start, which is harmless because the store keeps one row per URI. A line that cannot
be read is rejected by number; the lines around it are kept.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp
import orjson

from backchannel.core.models import Message
from backchannel.core.record import message_from_record
from backchannel.core.tags import has_all_cells, message_from_row, starts_row, unclosed_quote
from backchannel.errors import ConfigError, PayloadError
from backchannel.eventfile import EventFile, SourceType, register
from backchannel.sources.base import Page, UpstreamError

log = logging.getLogger(__name__)

FORMATS = ("auto", "jsonl", "tags")
DEFAULT_INTERVAL = 2.0
# Read at most this much per page; a bigger backlog is drained page by page (`more`),
# each stored with its own cursor, so a huge file never sits in memory at once.
CHUNK = 4 * 1024 * 1024
# The fingerprint covers this many of the file's first bytes (or fewer, if the cursor
# has not got that far): enough to tell a replaced file from a grown one.
HEAD = 1024
# A CSV record may span lines (a quoted newline), but a stray quote must not hold back
# the rest of the file for ever: past this many lines the record is rejected.
MAX_RECORD_LINES = 100
_BOM = b"\xef\xbb\xbf"
_RECORD_ERRORS = (PayloadError, ValueError, TypeError)


@dataclass(frozen=True, slots=True)
class FilePosition:
    offset: int = 0
    line: int = 0  # lines consumed: the next line is number line + 1
    head: str = ""

    def dumps(self) -> str:
        return orjson.dumps({"offset": self.offset, "line": self.line, "head": self.head}).decode()

    @classmethod
    def loads(cls, text: str | None) -> FilePosition:
        if not text:
            return cls()
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError:
            return cls()
        if isinstance(data, int) and data >= 0:
            return cls(offset=data)  # a bare offset: the line count is unknown
        if not isinstance(data, dict):
            return cls()
        offset, line, head = data.get("offset"), data.get("line"), data.get("head")
        return cls(
            offset=offset if isinstance(offset, int) and offset >= 0 else 0,
            line=line if isinstance(line, int) and line >= 0 else 0,
            head=head if isinstance(head, str) else "",
        )


def _fingerprint(fh: IO[bytes], offset: int) -> str:
    fh.seek(0)
    return hashlib.sha256(fh.read(min(offset, HEAD))).hexdigest()[:16]


def _reason(exc: Exception) -> str:
    if isinstance(exc, orjson.JSONDecodeError):
        return f"invalid JSON: {exc.msg} at character {exc.pos + 1}"
    return str(exc) or type(exc).__name__


def _is_tags_header(line: str) -> bool:
    columns = {c.strip().strip('"') for c in line.replace("\t", ",").split(",")}
    return "id_str" in columns and "from_user" in columns


@dataclass(slots=True)
class _Batch:
    messages: list[Message] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    consumed: int = 0  # bytes of the chunk fully dealt with
    lines: int = 0  # lines in those bytes


class FileSource:
    def __init__(
        self, path: str | os.PathLike[str], *, format: str = "auto", interval: float = DEFAULT_INTERVAL
    ) -> None:
        if format not in FORMATS:
            raise ConfigError(f"file: format must be one of {', '.join(FORMATS)}, got {format!r}")
        self.path = Path(path)
        self.format = format
        self.key = f"file:{self.path.resolve()}"
        self.interval = interval
        self.chunk = CHUNK
        self._format: str | None = None if format == "auto" else format
        self._header: list[str] | None = None
        self._delimiter = ","

    async def poll(self, http: aiohttp.ClientSession, cursor: str | None) -> Page:
        return await asyncio.to_thread(self.read, cursor)

    # -- reading -----------------------------------------------------------------------

    def read(self, cursor: str | None) -> Page:
        """The complete records after `cursor`, up to a chunk of them."""
        try:
            fh = open(self.path, "rb")  # noqa: SIM115 - closed below, after fstat and reads
        except FileNotFoundError:
            # Perhaps not created yet: retry soon (a network-kind failure), and say so.
            raise UpstreamError(f"{self.path} does not exist (yet)") from None
        except (PermissionError, IsADirectoryError) as exc:
            # Retrying will not help: a person must fix the path or its permissions.
            raise UpstreamError(f"cannot read {self.path}: {exc.strerror}", status=403) from None
        with fh:
            return self._read_open(fh, FilePosition.loads(cursor))

    def _read_open(self, fh: IO[bytes], pos: FilePosition) -> Page:
        size = os.fstat(fh.fileno()).st_size
        if pos.offset > size or (pos.offset and pos.head and _fingerprint(fh, pos.offset) != pos.head):
            log.warning("%s: the file was truncated or replaced; reading it again from the start", self.key)
            pos = FilePosition()
            self._header = None
            self._format = None if self.format == "auto" else self.format
        if pos.offset >= size:
            return Page()
        fh.seek(pos.offset)
        data = fh.read(self.chunk)
        full = len(data) == self.chunk
        start = pos.offset
        if start == 0 and data.startswith(_BOM):
            data, start = data[len(_BOM) :], len(_BOM)
        end = data.rfind(b"\n")
        if end < 0:
            if not full:
                return Page()  # the last line is still being written: wait for its newline
            return self._skip_long_line(fh, pos, start + len(data))
        data = data[: end + 1]
        if self._format is None or (self._format == "tags" and self._header is None):
            problem = self._learn_format(fh)
            if problem is not None:
                raise problem
            if self._format is None:
                return Page()  # the first line is not complete yet
        if self._format == "tags":
            batch = self._read_tags(data, first_line=pos.line + 1, at_start=pos.offset == 0, full=full)
        else:
            batch = self._read_jsonl(data, first_line=pos.line + 1)
        offset = start + batch.consumed
        after = FilePosition(offset=offset, line=pos.line + batch.lines, head=_fingerprint(fh, offset))
        return Page(
            messages=batch.messages,
            rejected=batch.rejected,
            cursor=after.dumps() if batch.consumed else None,
            more=full and offset < size,
        )

    def _skip_long_line(self, fh: IO[bytes], pos: FilePosition, searched_to: int) -> Page:
        """A line longer than a chunk: find where it ends and reject it whole."""
        fh.seek(searched_to)
        while block := fh.read(self.chunk):
            newline = block.find(b"\n")
            if newline >= 0:
                offset = searched_to + newline + 1
                after = FilePosition(offset=offset, line=pos.line + 1, head=_fingerprint(fh, offset))
                reason = f"line {pos.line + 1}: longer than {self.chunk:,} bytes"
                return Page(rejected=[reason], cursor=after.dumps(), more=True)
            searched_to += len(block)
        return Page()  # still being written

    def _learn_format(self, fh: IO[bytes]) -> UpstreamError | None:
        """Read the first line: the TAGS header, or the first JSONL record."""
        fh.seek(0)
        first = fh.readline().removeprefix(_BOM)
        if not first.endswith(b"\n"):
            return None
        text = first.decode("utf-8", errors="replace").rstrip("\r\n")
        if self._format in (None, "tags") and _is_tags_header(text):
            self._format = "tags"
            # Sheets' "copy" gives tab-separated text, its CSV download commas.
            self._delimiter = "\t" if text.count("\t") > text.count(",") else ","
            self._header = [name.strip() for name in next(csv.reader([text], delimiter=self._delimiter))]
            return None
        if self._format == "tags":
            return UpstreamError(
                f"{self.path}: the first line is not a TAGS header (id_str, from_user)", status=403
            )
        try:
            first_record = orjson.loads(first)
        except orjson.JSONDecodeError:
            first_record = None
        if isinstance(first_record, dict) and "network" in first_record and "network_id" in first_record:
            self._format = "jsonl"
            return None
        # Guessing on would reject every line: a person must name the format or the file.
        return UpstreamError(
            f"{self.path}: cannot tell the format from the first line (expected backchannel JSONL "
            "or a TAGS header); set format",
            status=403,
        )

    def _read_jsonl(self, data: bytes, *, first_line: int) -> _Batch:
        batch = _Batch(consumed=len(data), lines=data.count(b"\n"))
        for number, line in enumerate(data.split(b"\n")[:-1], first_line):
            if not line.strip():
                continue
            try:
                batch.messages.append(message_from_record(orjson.loads(line)))
            except _RECORD_ERRORS as exc:
                batch.rejected.append(f"line {number}: {_reason(exc)}")
        return batch

    def _read_tags(self, data: bytes, *, first_line: int, at_start: bool, full: bool) -> _Batch:
        assert self._header is not None
        batch = _Batch()
        lines = data.split(b"\n")[:-1]
        pending: list[bytes] = []
        quotes = 0
        position = 0  # bytes of `data` before the pending record
        index = 0
        while index < len(lines):
            line = lines[index]
            number = first_line + index
            index += 1
            if at_start and number == first_line and first_line == 1:
                batch.consumed, batch.lines, position = len(line) + 1, 1, len(line) + 1  # the header
                continue
            if pending and starts_row(line.decode("utf-8", errors="replace"), self._header, self._delimiter):
                # The quote of the pending record never closed: see tags.starts_row.
                start = number - len(pending)
                reason = unclosed_quote(start, number - 1, f"line {number} reads as a row of its own")
                batch.rejected.append(f"line {start}: {reason}")
                position += sum(len(p) + 1 for p in pending)
                batch.consumed, batch.lines = position, index - 1
                pending, quotes = [], 0
            pending.append(line)
            quotes += line.count(b'"')
            if (
                quotes % 2
                and len(pending) == 1
                and has_all_cells(line.decode("utf-8", errors="replace"), self._header, self._delimiter)
            ):
                quotes = 0  # a stray quote inside an unquoted cell: a character, not an opening
            if quotes % 2:
                if len(pending) < MAX_RECORD_LINES:
                    continue
                # A quote that never closes: reject its first line, go on after it.
                start = number - len(pending) + 1
                batch.rejected.append(f"line {start}: a quoted cell that never ends")
                index = start - first_line + 1
                position += len(pending[0]) + 1
                batch.consumed, batch.lines = position, index
                pending, quotes = [], 0
                continue
            record_start = number - len(pending) + 1
            record = b"\n".join(pending)
            position += len(record) + 1
            batch.consumed, batch.lines = position, index
            pending, quotes = [], 0
            self._tags_record(record, record_start, batch)
        if pending and full and not batch.consumed:
            # A single record larger than a chunk: reject its first line so the file moves on.
            batch.rejected.append(f"line {first_line}: a quoted cell that never ends")
            batch.consumed, batch.lines = len(pending[0]) + 1, 1
        return batch

    def _tags_record(self, record: bytes, number: int, batch: _Batch) -> None:
        assert self._header is not None
        text = record.decode("utf-8", errors="replace")
        if not text.strip():
            return
        try:
            rows = list(csv.reader(io.StringIO(text), delimiter=self._delimiter))
        except csv.Error as exc:
            batch.rejected.append(f"line {number}: unreadable CSV ({exc})")
            return
        cells = [cell.rstrip("\r") for cell in rows[0]] if len(rows) == 1 else None
        if cells is None:
            batch.rejected.append(f"line {number}: unreadable CSV")
            return
        if len(cells) != len(self._header):
            batch.rejected.append(
                f"line {number}: {len(cells)} cells where the header has {len(self._header)}"
            )
            return
        try:
            batch.messages.append(message_from_row(dict(zip(self._header, cells, strict=True))))
        except _RECORD_ERRORS as exc:
            batch.rejected.append(f"line {number}: {_reason(exc)}")


def _build(event_file: EventFile, settings: Mapping[str, Any]) -> FileSource:
    path, fmt = settings.get("path"), settings.get("format", "auto")
    if not isinstance(path, str) or not path:
        raise ConfigError("file: path is required (the JSONL or CSV file to follow)")
    if not isinstance(fmt, str):
        raise ConfigError(f"file: format must be one of {', '.join(FORMATS)}")
    return FileSource(path, format=fmt, interval=float(settings.get("interval", DEFAULT_INTERVAL)))


register(
    SourceType(
        network="file",
        summary="a JSONL (backchannel's own) or TAGS CSV file, followed as lines are appended",
        settings={
            "path": "the file to follow",
            "format": "auto (from the first line), jsonl or tags",
        },
        build=_build,
    )
)
