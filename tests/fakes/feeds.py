"""A fake Blogger comment feed on a free port: Atom at `/feeds/comments/default`, RSS 2.0
with `?alt=rss`, as Blogger serves them.

The comments come from seed 003 (a 2011 thread on Jon Ingham's Strategic HCM blog about
social mobility): entry ids in Blogger's form `tag:blogger.com,1999:blog-{blog}.post-{id}`,
times with Blogger's -08:00 offset and milliseconds, HTML content with `<br />` and
`&#39;`, every author's email the shared `noreply@blogger.com`. Only the first comment's
id and time are the seed's own; the others are made up in the same form.

Conditional requests follow RFC 9110: an `If-None-Match` matching the ETag gets a 304,
and `If-Modified-Since` is consulted only when there is no `If-None-Match`. Every
request's headers are recorded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime, parsedate_to_datetime
from xml.sax.saxutils import escape, quoteattr

from aiohttp import web

from fakes import serve

BLOG_ID = "2092962624616655369"
BLOG = "https://strategic-hcm.blogspot.com"
POST_ID = "8812604212765530150"
POST_URL = f"{BLOG}/2011/11/social-mobility-and-business.html"
PACIFIC = timezone(timedelta(hours=-8))


def blogger_id(comment_id: str) -> str:
    return f"tag:blogger.com,1999:blog-{BLOG_ID}.post-{comment_id}"


@dataclass
class Comment:
    comment_id: str
    author: str
    published: datetime
    html: str
    profile: str | None = None
    link: str | None = None  # defaults to the post's showComment link

    @property
    def id(self) -> str:
        return blogger_id(self.comment_id)

    @property
    def href(self) -> str:
        millis = int(self.published.timestamp() * 1000)
        return self.link or f"{POST_URL}?showComment={millis}#c{self.comment_id}"


def seed_comments() -> list[Comment]:
    return [
        Comment(
            "5760686557270386096",
            "Jon Ingham",
            datetime(2011, 11, 18, 6, 52, 19, 710000, tzinfo=PACIFIC),
            "I&#39;ve had a comment on this post on another post over at Strategic HCM: "
            "https://strategic-hcm.blogspot.com/2011/11/my-favourite-post-from-cipd11-was.html.<br /><br />"
            "In response to this I want to provide a bit more context about the meeting, which I "
            "should have added before.",
            profile="https://www.blogger.com/profile/00000000000000000001",
        ),
        Comment(
            "3141592653589793238",
            "Natalie Cooper",
            datetime(2011, 11, 18, 8, 4, 11, 120000, tzinfo=PACIFIC),
            "The hierarchical organisation reflects a hierarchical society. If we want to encourage "
            "social mobility, we have to move away from the existing model of organisations.<br /><br />"
            'See <a href="https://www.changeboard.com/content/3817/leadership-and-management/">the '
            "Grant Thornton piece</a>.",
        ),
        Comment(
            "2718281828459045235",
            "Barry Sampson",
            datetime(2011, 11, 18, 9, 30, 2, 5000, tzinfo=PACIFIC),
            "Not much more on broader social business (vs just social media) in the debate either. "
            "But the write up is here: https://wearelikeminds.com/live/the-future-of-social-media-in-business "
            "#socialbusiness",
        ),
    ]


@dataclass
class FakeBlog:
    comments: list[Comment] = field(default_factory=seed_comments)
    conditional: bool = True  # send ETag / Last-Modified and honour them
    requests: list[Mapping[str, str]] = field(default_factory=list)
    errors: list[tuple[int, Mapping[str, str], str]] = field(default_factory=list)  # served next
    base: str = ""  # http://127.0.0.1:PORT once started
    _runner: web.AppRunner | None = None

    def add(self, comment: Comment) -> Comment:
        self.comments.append(comment)
        return comment

    @property
    def url(self) -> str:
        return f"{self.base}/feeds/comments/default"

    @property
    def rss_url(self) -> str:
        return self.url + "?alt=rss"

    async def __aenter__(self) -> FakeBlog:
        app = web.Application()
        app.router.add_get("/feeds/comments/default", self._feed)
        app.router.add_get("/not-a-feed", self._html)
        self._runner, self.base = await serve(app)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- documents -----------------------------------------------------------------------

    def _updated(self) -> datetime:
        return max(c.published for c in self.comments)

    def atom(self) -> str:
        entries = "".join(
            f"<entry><id>{escape(c.id)}</id>"
            f"<published>{_blogger_time(c.published)}</published><updated>{_blogger_time(c.published)}</updated>"
            f"<title type='text'>{escape(_title(c.html))}</title>"
            f"<content type='html'>{escape(c.html)}</content>"
            f"<link rel='edit' type='application/atom+xml' href='https://www.blogger.com/feeds/{BLOG_ID}/"
            f"{POST_ID}/comments/default/{c.comment_id}'/>"
            f"<link rel='alternate' type='text/html' href={quoteattr(c.href)} title=''/>"
            f"<author><name>{escape(c.author)}</name>"
            + (f"<uri>{escape(c.profile)}</uri>" if c.profile else "")
            + "<email>noreply@blogger.com</email></author>"
            f"<thr:in-reply-to xmlns:thr='http://purl.org/syndication/thread/1.0' href='{POST_URL}' "
            f"ref='tag:blogger.com,1999:blog-{BLOG_ID}.post-{POST_ID}' type='text/html'/>"
            "</entry>"
            for c in self.comments
        )
        return (
            "<?xml version='1.0' encoding='UTF-8'?>"
            "<feed xmlns='http://www.w3.org/2005/Atom' xmlns:thr='http://purl.org/syndication/thread/1.0'>"
            f"<id>tag:blogger.com,1999:blog-{BLOG_ID}.comments</id>"
            f"<updated>{_blogger_time(self._updated())}</updated>"
            "<title type='text'>Strategic HCM</title>"
            f"<link rel='alternate' type='text/html' href='{BLOG}/'/>"
            "<generator version='7.00' uri='http://www.blogger.com'>Blogger</generator>"
            f"{entries}</feed>"
        )

    def rss(self) -> str:
        items = "".join(
            f"<item><guid isPermaLink='false'>{escape(c.id)}</guid>"
            f"<pubDate>{format_datetime(c.published.astimezone(PACIFIC).replace(microsecond=0))}</pubDate>"
            f"<title>{escape(_title(c.html))}</title>"
            f"<description>{escape(c.html)}</description>"
            f"<link>{escape(c.href)}</link>"
            f"<author>noreply@blogger.com ({escape(c.author)})</author></item>"
            for c in self.comments
        )
        return (
            "<?xml version='1.0' encoding='UTF-8'?><rss version='2.0'><channel>"
            f"<title>Strategic HCM</title><link>{BLOG}/</link><description>comments</description>"
            f"{items}</channel></rss>"
        )

    # -- handlers ------------------------------------------------------------------------

    async def _feed(self, request: web.Request) -> web.Response:
        self.requests.append(dict(request.headers))
        if self.errors:
            status, headers, text = self.errors.pop(0)
            return web.Response(status=status, headers=headers, text=text)
        rss = request.query.get("alt") == "rss"
        body = (self.rss() if rss else self.atom()).encode()
        content_type = "application/rss+xml" if rss else "application/atom+xml"
        if not self.conditional:
            return web.Response(body=body, content_type=content_type, charset="utf-8")
        etag = f'W/"{hashlib.sha256(body).hexdigest()[:20]}"'
        modified = self._updated().astimezone(UTC).replace(microsecond=0)
        headers = {"ETag": etag, "Last-Modified": format_datetime(modified, usegmt=True)}
        if_none_match = request.headers.get("If-None-Match")
        if if_none_match is not None:
            if etag in [tag.strip() for tag in if_none_match.split(",")]:
                return web.Response(status=304, headers=headers)
        elif since := request.headers.get("If-Modified-Since"):
            try:
                if modified <= parsedate_to_datetime(since):
                    return web.Response(status=304, headers=headers)
            except (TypeError, ValueError):
                pass
        return web.Response(body=body, headers=headers, content_type=content_type, charset="utf-8")

    async def _html(self, request: web.Request) -> web.Response:
        self.requests.append(dict(request.headers))
        return web.Response(text="<html><body><h1>Sign in</h1></body></html>", content_type="text/html")


def _blogger_time(dt: datetime) -> str:
    local = dt.astimezone(PACIFIC)
    return local.strftime("%Y-%m-%dT%H:%M:%S.") + f"{local.microsecond // 1000:03d}-08:00"


def _title(html: str) -> str:
    # Blogger titles a comment with its first 50 characters and an ellipsis.
    text = html.replace("<br />", " ")
    return text[:47] + "..." if len(text) > 50 else text
