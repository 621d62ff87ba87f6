"""twarc2 JSONL lines (X API v2 responses) to `Message`s.

Pure: no I/O. A twarc2 line is either one API response page (`data`, `includes`,
`meta`, `errors`, `__twarc`; `data` is a list for search, one object for the
filtered stream) or, after `twarc2 flatten`, one post with its `author` inline.

Identity is the canonical `https://x.com/i/status/ID`, whatever the handle, so a
retweet's `repost_of` and a reply's `reply_to` name the referenced post without
needing its author. A retweet's original, when the page includes it, is returned
as a message of its own so the retweet has something to count onto.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

import orjson

from backchannel.core.models import Message, Network
from backchannel.core.record import parse_time
from backchannel.errors import PayloadError


def canonical_uri(tweet_id: str) -> str:
    return f"https://x.com/i/status/{tweet_id}"


def permalink(username: str | None, tweet_id: str) -> str:
    return f"https://x.com/{username}/status/{tweet_id}" if username else canonical_uri(tweet_id)


def _index(includes: Mapping[str, Any], key: str) -> dict[str, Mapping[str, Any]]:
    """`includes[key]` by id; entries without a string id are of no use and skipped."""
    items = includes.get(key)
    if items is None:
        return {}
    if not isinstance(items, list):
        raise PayloadError(f"includes.{key} must be a list")
    return {i["id"]: i for i in items if isinstance(i, Mapping) and isinstance(i.get("id"), str)}


def _tweet_id(tweet: Mapping[str, Any]) -> str:
    value = tweet.get("id")
    if not isinstance(value, str) or not value.isdigit():
        raise PayloadError(f"id must be a numeric string, got {value!r:.40}")
    return value


def _text(tweet: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    """The full text (long posts keep it in `note_tweet`) and the entities that index it."""
    note = tweet.get("note_tweet")
    if isinstance(note, Mapping) and isinstance(note.get("text"), str):
        entities = note.get("entities")
        if isinstance(entities, Mapping):
            return note["text"], entities
        return note["text"], _entities(tweet)
    text = tweet.get("text")
    if not isinstance(text, str):
        raise PayloadError("text must be a string" if "text" in tweet else "missing text")
    return text, _entities(tweet)


def _entities(tweet: Mapping[str, Any]) -> Mapping[str, Any]:
    entities = tweet.get("entities")
    if entities is None:
        return {}
    if not isinstance(entities, Mapping):
        raise PayloadError("entities must be an object")
    return entities


def _entity_values(entities: Mapping[str, Any], key: str, *fields: str) -> list[str]:
    items = entities.get(key)
    if items is None:
        return []
    if not isinstance(items, list):
        raise PayloadError(f"entities.{key} must be a list")
    values: list[str] = []
    for item in items:
        if not isinstance(item, Mapping):
            raise PayloadError(f"entities.{key} entries must be objects")
        value = next((item[f] for f in fields if isinstance(item.get(f), str) and item[f]), None)
        if value and value not in values:
            values.append(value)
    return values


def _references(tweet: Mapping[str, Any]) -> list[tuple[str, str, Mapping[str, Any]]]:
    """(type, id, the reference object) for each of `referenced_tweets`."""
    refs = tweet.get("referenced_tweets")
    if refs is None:
        return []
    if not isinstance(refs, list):
        raise PayloadError("referenced_tweets must be a list")
    found = []
    for ref in refs:
        if not isinstance(ref, Mapping) or not isinstance(ref.get("type"), str):
            raise PayloadError("referenced_tweets entries must be objects with a type and an id")
        found.append((ref["type"], _tweet_id(ref), ref))
    return found


def _author(tweet: Mapping[str, Any], users: Mapping[str, Mapping[str, Any]]) -> tuple[str, str, bool]:
    """Handle, display name, and whether the handle is a real username."""
    user = tweet.get("author")
    author_id = tweet.get("author_id")
    if not isinstance(user, Mapping):
        user = users.get(author_id) if isinstance(author_id, str) else None
    username = user.get("username") if user else None
    if isinstance(username, str) and username:
        name = user.get("name") if user else None
        return username, name if isinstance(name, str) and name else username, True
    # An expansion left out of the page: the numeric id is all we know of the author.
    if isinstance(author_id, str) and author_id:
        return author_id, author_id, False
    raise PayloadError("missing author_id")


def message_from_tweet(
    tweet: Any, users: Mapping[str, Mapping[str, Any]] | None = None, *, event: str = ""
) -> Message:
    """One v2 post; `users` are the page's `includes.users` by id (flattened posts carry `author`)."""
    if not isinstance(tweet, Mapping):
        raise PayloadError(f"a tweet must be a JSON object, got {type(tweet).__name__}")
    tweet_id = _tweet_id(tweet)
    if tweet.get("created_at") is None:
        raise PayloadError("missing created_at")
    created_at = parse_time(tweet["created_at"])
    text, entities = _text(tweet)
    handle, name, known = _author(tweet, users or {})
    links = _entity_values(entities, "urls", "expanded_url", "url")
    reply_to = repost_of = None
    for kind, ref_id, _ in _references(tweet):
        if kind == "retweeted":
            repost_of = canonical_uri(ref_id)
        elif kind == "replied_to":
            reply_to = canonical_uri(ref_id)
        elif kind == "quoted" and canonical_uri(ref_id) not in links:
            links.append(canonical_uri(ref_id))
    return Message(
        network=Network.X,
        network_id=tweet_id,
        uri=canonical_uri(tweet_id),
        author_handle=handle,
        author_name=name,
        # X escapes &, < and > in post text; the plain text has them back.
        text=html.unescape(text),
        created_at=created_at,
        event=event,
        permalink=permalink(handle if known else None, tweet_id),
        reply_to=reply_to,
        repost_of=repost_of,
        hashtags=tuple(_entity_values(entities, "hashtags", "tag")),
        mentions=tuple(_entity_values(entities, "mentions", "username")),
        links=tuple(links),
        raw=_json(tweet),
    )


def _json(tweet: Mapping[str, Any]) -> str:
    try:
        return orjson.dumps(tweet).decode()
    except TypeError as exc:  # orjson refuses integers beyond 64 bits, for one
        raise PayloadError(f"tweet cannot be kept as JSON: {exc}") from exc


def _retweeted(
    tweet: Mapping[str, Any], included: Mapping[str, Mapping[str, Any]]
) -> Mapping[str, Any] | None:
    """The original of a retweet, from the page's includes or inlined by `twarc2 flatten`."""
    for kind, ref_id, ref in _references(tweet):
        if kind == "retweeted":
            if ref_id in included:
                return included[ref_id]
            if "text" in ref and "created_at" in ref:
                return ref
    return None


def _where(tweet: Any, position: int) -> str:
    tweet_id = tweet.get("id") if isinstance(tweet, Mapping) else None
    if isinstance(tweet_id, str) and tweet_id.isdigit():
        return f"tweet {tweet_id}"
    return f"tweet #{position}"


def _page_parts(
    page: Mapping[str, Any],
) -> tuple[list[Any], dict[str, Mapping[str, Any]], dict[str, Mapping[str, Any]]]:
    """The page's posts, its included users by id and its included posts by id."""
    if "data" in page:
        data = page["data"]
        tweets = [data] if isinstance(data, Mapping) else data
        if not isinstance(tweets, list):
            raise PayloadError("data must be a list of tweets or one tweet")
        includes = page.get("includes")
        if includes is None:
            includes = {}
        if not isinstance(includes, Mapping):
            raise PayloadError("includes must be an object")
        return tweets, _index(includes, "users"), _index(includes, "tweets")
    if "author_id" in page or "author" in page:
        return [page], {}, {}
    if "errors" in page:
        # A page of errors only (deleted or protected posts, a stream notice): nothing to keep.
        return [], {}, {}
    raise PayloadError("not a twarc2 line: neither a response page (data) nor a flattened tweet (author_id)")


def messages_from_twarc_page(page: Any, *, event: str = "") -> tuple[list[Message], list[str]]:
    """The messages of one twarc2 line, and a problem per post that could not be read.

    A problem reads `"tweet ID: reason"` (`"tweet #N: reason"` when the post has no
    usable id, N counting from 1 in `data`); the other posts of the page are kept.
    A line that is not a twarc2 page at all raises PayloadError.
    """
    if not isinstance(page, Mapping):
        raise PayloadError(f"a twarc2 line must be a JSON object, got {type(page).__name__}")
    tweets, users, included = _page_parts(page)
    messages: list[Message] = []
    problems: list[str] = []
    seen: set[str] = set()
    for position, tweet in enumerate(tweets, 1):
        try:
            message = message_from_tweet(tweet, users, event=event)
            original = _retweeted(tweet, included)
        except PayloadError as exc:
            problems.append(f"{_where(tweet, position)}: {exc}")
            continue
        found = [message]
        if original is not None:
            try:
                found.insert(0, message_from_tweet(original, users, event=event))
            except PayloadError as exc:
                problems.append(f"{_where(original, position)} (retweeted): {exc}")
        for m in found:
            if m.uri not in seen:
                seen.add(m.uri)
                messages.append(m)
    return messages, problems
