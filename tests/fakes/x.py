"""A fake X API v2 recent search (`GET /2/tweets/search/recent`).

Follows docs.x.com ("Search Posts: recent", "Recent search pagination", "Rate
limits"): posts newest first; `since_id` excludes that id and older; `max_results`
10–100; a `next_token` when more posts match than one response holds, and a token
that gives the same page whenever it is used (it records where the page ends, not
an offset, so newer posts arriving between requests do not shift it). A token
presented with another `since_id` than the one it was issued for is refused, as the
real API refuses a token for another query, so a client that advances `since_id`
in the middle of a round fails loudly here.

Responses carry `data`, `includes.users` / `includes.tweets` (the authors and the
referenced posts), `errors` for references that cannot be found, and `meta`
(`newest_id`, `oldest_id`, `result_count`, `next_token`); `tweet.fields` and
`user.fields` are honoured. Each response has the `x-rate-limit-*` headers; when the
window is spent the next request gets 429. Tests script failures (`fail_next`) and
can hold the n-th request until they release it (`hold`).
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from fakes import serve

FIRST_ID = 1_805_000_000_000_000_000
T0 = datetime(2026, 6, 22, 12, 0, tzinfo=UTC)
_HASHTAG = re.compile(r"#(\w+)")
_MENTION = re.compile(r"@(\w+)")
_URL = re.compile(r"https?://\S+")

UNAUTHORIZED = {"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"}
TOO_MANY = {"title": "Too Many Requests", "detail": "Too Many Requests", "type": "about:blank", "status": 429}
SERVER_ERROR = {
    "title": "Internal Server Error",
    "detail": "Something went wrong",
    "type": "about:blank",
    "status": 500,
}
FORBIDDEN = {
    "title": "Forbidden",
    "detail": "Your client app is not configured with the appropriate oauth1 app permissions for this endpoint.",
    "type": "https://api.twitter.com/2/problems/oauth1-permissions",
    "status": 403,
}


def _invalid(parameter: str, message: str) -> dict[str, Any]:
    return {
        "errors": [{"parameters": {parameter: []}, "message": message}],
        "title": "Invalid Request",
        "detail": "One or more parameters to your request was invalid.",
        "type": "https://api.twitter.com/2/problems/invalid-request",
    }


def _entities(text: str) -> dict[str, Any]:
    entities: dict[str, Any] = {}
    for key, pattern, name in (("hashtags", _HASHTAG, "tag"), ("mentions", _MENTION, "username")):
        found = [{"start": m.start(), "end": m.end(), name: m.group(1)} for m in pattern.finditer(text)]
        if found:
            entities[key] = found
    urls = [
        {
            "start": m.start(),
            "end": m.end(),
            "url": m.group(),
            "expanded_url": m.group(),
            "display_url": m.group(),
        }
        for m in _URL.finditer(text)
    ]
    if urls:
        entities["urls"] = urls
    return entities


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass
class _Failure:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class FakeX:
    """X's recent search on a local port. Use as an async context manager."""

    def __init__(self, token: str = "test-bearer-token", *, limit: int = 450) -> None:
        self.token = token
        self.tweets: dict[str, dict[str, Any]] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.requests: list[dict[str, str]] = []  # each search request's parameters
        self.failures: list[_Failure] = []
        self.limit = self.remaining = limit
        self.reset = int(time.time()) + 900
        self.held: dict[int, asyncio.Event] = {}  # request number (from 1) -> released when set
        self.waiting: set[int] = set()
        self.url = ""
        self._next_id = FIRST_ID
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> FakeX:
        app = web.Application()
        app.router.add_get("/2/tweets/search/recent", self._search)
        self._runner, self.url = await serve(app)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for gate in self.held.values():
            gate.set()
        assert self._runner is not None
        await self._runner.cleanup()

    # -- driving it -----------------------------------------------------------------------

    def user(self, username: str) -> str:
        """The id of `username`, made up the first time."""
        for user_id, user in self.users.items():
            if user["username"] == username:
                return user_id
        user_id = str(10_000 + len(self.users))
        self.users[user_id] = {"id": user_id, "username": username, "name": username.title()}
        return user_id

    def add(
        self,
        text: str,
        *,
        author: str = "alice",
        retweet_of: str | None = None,
        reply_to: str | None = None,
        exists: bool = True,
    ) -> dict[str, Any]:
        """Post a tweet (ids grow, a second apart); a retweet's text is X's truncated "RT @…: …"."""
        self._next_id += 1_000_000
        tweet_id = str(self._next_id)
        created = T0 + timedelta(seconds=len(self.tweets))
        refs = []
        if retweet_of is not None:
            original = self.tweets[retweet_of]
            by = self.users[original["author_id"]]["username"]
            text = f"RT @{by}: {original['text']}"[:140]
            refs.append({"type": "retweeted", "id": retweet_of})
        if reply_to is not None:
            refs.append({"type": "replied_to", "id": reply_to})
        tweet: dict[str, Any] = {
            "id": tweet_id,
            "text": text,
            "author_id": self.user(author),
            "created_at": _iso(created),
            "conversation_id": tweet_id,
            "edit_history_tweet_ids": [tweet_id],
        }
        if entities := _entities(text):
            tweet["entities"] = entities
        if refs:
            tweet["referenced_tweets"] = refs
        if exists:
            self.tweets[tweet_id] = tweet
        return tweet

    def fail_next(self, status: int, body: dict[str, Any] | None = None, **headers: str) -> None:
        defaults = {401: UNAUTHORIZED, 403: FORBIDDEN, 429: TOO_MANY}
        self.failures.append(_Failure(status, body or defaults.get(status, SERVER_ERROR), headers))

    def hold(self, request_number: int) -> asyncio.Event:
        """Make the n-th request (from 1) wait until the returned event is set."""
        self.held[request_number] = gate = asyncio.Event()
        return gate

    # -- the endpoint ---------------------------------------------------------------------------

    def _limits(self) -> dict[str, str]:
        return {
            "x-rate-limit-limit": str(self.limit),
            "x-rate-limit-remaining": str(self.remaining),
            "x-rate-limit-reset": str(self.reset),
        }

    async def _search(self, request: web.Request) -> web.Response:
        params = dict(request.query)
        self.requests.append(params)
        number = len(self.requests)
        if number in self.held:
            self.waiting.add(number)
            await self.held[number].wait()
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response(UNAUTHORIZED, status=401)
        if self.failures:
            failure = self.failures.pop(0)
            return web.json_response(failure.body, status=failure.status, headers=failure.headers)
        if self.remaining <= 0:
            return web.json_response(TOO_MANY, status=429, headers=self._limits())
        self.remaining -= 1
        try:
            body = self._page(params)
        except ValueError as exc:
            parameter, message = exc.args
            return web.json_response(_invalid(parameter, message), status=400, headers=self._limits())
        return web.json_response(body, headers=self._limits())

    def _page(self, params: dict[str, str]) -> dict[str, Any]:
        query = params.get("query", "")
        tags = {t.lower() for t in _HASHTAG.findall(query)}
        if not tags:
            raise ValueError("query", "The `query` query parameter can not be empty")
        max_results = int(params.get("max_results", "10"))
        if not 10 <= max_results <= 100:
            raise ValueError(
                "max_results",
                f"The `max_results` query parameter value [{max_results}] is not between 10 and 100",
            )
        since = int(params["since_id"]) if "since_id" in params else 0
        until = None
        if "next_token" in params:
            token_since, _, token_until = (
                base64.urlsafe_b64decode(params["next_token"]).decode().partition(":")
            )
            if int(token_since) != since:
                raise ValueError(
                    "next_token",
                    f"The `next_token` query parameter value [{params['next_token']}] is not valid",
                )
            until = int(token_until)
        start = params.get("start_time")
        matching = [
            t
            for t in sorted(self.tweets.values(), key=lambda t: int(t["id"]), reverse=True)
            if int(t["id"]) > since
            and (until is None or int(t["id"]) < until)
            and (start is None or t["created_at"] >= start.replace("+00:00", "Z"))
            and tags & {h["tag"].lower() for h in t.get("entities", {}).get("hashtags", [])}
            and not (
                "-is:retweet" in query
                and any(r["type"] == "retweeted" for r in t.get("referenced_tweets", []))
            )
        ]
        page, rest = matching[:max_results], matching[max_results:]
        if not page:
            return {"meta": {"result_count": 0}}
        fields = set(params.get("tweet.fields", "").split(","))
        expansions = set(params.get("expansions", "").split(","))
        data = [self._fields(t, fields) for t in page]
        included: dict[str, dict[str, Any]] = {}
        errors = []
        if "referenced_tweets.id" in expansions:
            for tweet in page:
                for ref in tweet.get("referenced_tweets", []):
                    if ref["id"] in self.tweets:
                        included[ref["id"]] = self._fields(self.tweets[ref["id"]], fields)
                    else:
                        errors.append(
                            {
                                "value": ref["id"],
                                "detail": f"Could not find tweet with referenced_tweets.id: [{ref['id']}].",
                                "title": "Not Found Error",
                                "resource_type": "tweet",
                                "parameter": "referenced_tweets.id",
                                "resource_id": ref["id"],
                                "type": "https://api.twitter.com/2/problems/resource-not-found",
                            }
                        )
        body: dict[str, Any] = {"data": data}
        authors = {t["author_id"] for t in page} if "author_id" in expansions else set()
        if "referenced_tweets.id.author_id" in expansions:
            authors |= {t["author_id"] for t in included.values()}
        user_fields = set(params.get("user.fields", "").split(",")) | {"id", "name", "username"}
        includes: dict[str, Any] = {}
        if authors:
            includes["users"] = [
                {k: v for k, v in self.users[a].items() if k in user_fields} for a in sorted(authors)
            ]
        if included:
            includes["tweets"] = list(included.values())
        if includes:
            body["includes"] = includes
        if errors:
            body["errors"] = errors
        meta: dict[str, Any] = {
            "newest_id": page[0]["id"],
            "oldest_id": page[-1]["id"],
            "result_count": len(page),
        }
        if rest:
            meta["next_token"] = base64.urlsafe_b64encode(f"{since}:{page[-1]['id']}".encode()).decode()
        body["meta"] = meta
        return body

    @staticmethod
    def _fields(tweet: dict[str, Any], fields: set[str]) -> dict[str, Any]:
        # id, text and edit_history_tweet_ids come by default; the rest only when asked for.
        keep = {"id", "text", "edit_history_tweet_ids"} | fields
        return {k: v for k, v in tweet.items() if k in keep}
