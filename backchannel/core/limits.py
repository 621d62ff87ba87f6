"""Length caps on what a message may hold, applied to every `Message` as it is built.

Pure: no I/O. A stranger can send a post of a megabyte (one took 44 s to reach the
dashboard and 86 s to reach the wall), a name of a thousand characters or ten thousand
links; the caps bound what every later step (store, question detector, fan-out,
rendering, export) pays, and no real post reaches them. `Message.__post_init__` applies
them, so every source, importer and upstream edit passes through them on its way into
the store, and a message read back from the store is already within them.

What happens past a cap:
- text: cut to `TEXT_MAX` characters, ending with `TRUNCATED` so a reader sees it;
- display name: cut, ending with "…";
- identities (`network_id`, `uri`, `reply_to`, `repost_of`, `author_handle`): cut,
  ending with "…" and 16 hex digits of the full value's SHA-256, so two long
  identities that share a beginning stay two, and a reply names its parent's capped
  `uri` exactly as the parent itself was capped;
- `permalink` and each link, hashtag and mention: dropped (a cut URL or tag would be
  another one); the lists keep their first `ITEMS_MAX` entries;
- `raw` (the upstream payload, which holds the original text): kept whole up to
  `RAW_MAX` characters; past it, replaced by a JSON object saying so, with the
  payload's beginning.
"""

from __future__ import annotations

import hashlib

import orjson

TEXT_MAX = 5_000
NAME_MAX = 200  # author_name
HANDLE_MAX = 200  # author_handle, and each hashtag and mention
URL_MAX = 2_048  # network_id, uri, permalink, reply_to, repost_of, and each link
ITEMS_MAX = 50  # links, hashtags, mentions: entries kept of each
RAW_MAX = 256 * 1024  # characters of the upstream payload's JSON text
TRUNCATED = "… [truncated]"
_DIGEST = 16  # hex digits of SHA-256 that keep a cut identity unique


def cap_text(text: str) -> str:
    if len(text) <= TEXT_MAX:
        return text
    return text[: TEXT_MAX - len(TRUNCATED)].rstrip() + TRUNCATED


def cap_name(name: str) -> str:
    return name if len(name) <= NAME_MAX else name[: NAME_MAX - 1] + "…"


def cap_identity(value: str, limit: int) -> str:
    if len(value) <= limit:
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:_DIGEST]
    return f"{value[: limit - _DIGEST - 1]}…{digest}"


def cap_optional_identity(value: str | None, limit: int) -> str | None:
    return value if value is None else cap_identity(value, limit)


def cap_entries(values: tuple[str, ...], limit: int) -> tuple[str, ...]:
    """At most ITEMS_MAX of `values`, leaving out any longer than `limit`."""
    if len(values) <= ITEMS_MAX and all(len(v) <= limit for v in values):
        return values
    return tuple(v for v in values if len(v) <= limit)[:ITEMS_MAX]


def cap_raw(raw: str | None) -> str | None:
    if raw is None or len(raw) <= RAW_MAX:
        return raw
    note = f"the upstream payload had {len(raw):,} characters, over the {RAW_MAX:,} kept"
    return orjson.dumps({"truncated": note, "head": raw[: RAW_MAX // 2]}).decode()


def entries_over(values: tuple[str, ...], limit: int) -> bool:
    """Whether `values` has too many entries or one longer than `limit`."""
    return len(values) > ITEMS_MAX or any(len(v) > limit for v in values)
