"""HTML pages: login, the event list, the moderator dashboard and the public wall.

Pages are Jinja2 templates from `web/templates` with autoescaping on. They carry no
message data: the scripts fetch it as JSON and insert it as text. No inline script
anywhere, so the Content-Security-Policy can forbid them.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from urllib.parse import quote

import jinja2
from aiohttp import web
from aiohttp_session import get_session

from backchannel.server.keys import STORE, TEMPLATES, known_event
from backchannel.server.security import (
    check_login,
    csrf_token,
    current_user,
    login_session,
    logout_session,
    origin_allowed,
)

WEB = Path(__file__).resolve().parent.parent.parent / "web"


def template_environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(WEB / "templates"),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        undefined=jinja2.StrictUndefined,
    )


def render(request: web.Request, name: str, status: int = 200, **context: object) -> web.Response:
    html = request.app[TEMPLATES].get_template(name).render(**context)
    return web.Response(text=html, status=status, content_type="text/html")


def _safe_next(value: str | None) -> str:
    """Only same-site paths after login: never `//evil.example` or `https://…`.

    Browsers drop tabs and newlines from a URL and read a backslash as a slash, so a
    slash, a tab and `/evil.example` would leave the site too: a backslash, whitespace
    or a control character anywhere refuses the value.
    """
    if (
        value
        and value.startswith("/")
        and not value.startswith("//")
        and "\\" not in value
        and value.isprintable()
        and not any(c.isspace() for c in value)
    ):
        return value
    return "/"


async def index(request: web.Request) -> web.Response:
    user = await current_user(request)
    if user is None:
        raise web.HTTPFound("/login")
    names = await asyncio.to_thread(request.app[STORE].event_names)
    return render(request, "index.html", user=user, events=names, csrf=await csrf_token(request))


async def login_page(request: web.Request) -> web.Response:
    return render(request, "login.html", next=_safe_next(request.query.get("next")), error=None)


async def login(request: web.Request) -> web.Response:
    if not origin_allowed(request):
        raise web.HTTPForbidden(text="cross-origin login refused")
    form = await request.post()
    username = str(form.get("username", ""))[:200]
    password = str(form.get("password", ""))[:1000]
    target = _safe_next(str(form.get("next", "")))
    result = await check_login(request, username, password)
    if result.retry_after is not None:
        response = render(
            request, "login.html", status=429, next=target, error="Too many attempts; try later."
        )
        response.headers["Retry-After"] = str(result.retry_after)
        return response
    if not result.ok:
        return render(request, "login.html", status=401, next=target, error="Wrong user name or password.")
    await login_session(request, username)
    raise web.HTTPSeeOther(target)


async def logout(request: web.Request) -> web.Response:
    session = await get_session(request)
    form = await request.post()
    given, expected = form.get("csrf"), session.get("csrf")
    if (
        not origin_allowed(request)
        or not isinstance(given, str)
        or not isinstance(expected, str)
        or not secrets.compare_digest(given, expected)
    ):
        raise web.HTTPForbidden(text="missing or bad CSRF token")
    await logout_session(request)
    raise web.HTTPSeeOther("/login")


async def dashboard(request: web.Request) -> web.Response:
    event = request.match_info["event"]
    user = await current_user(request)
    if user is None:
        raise web.HTTPFound(f"/login?next={quote('/events/' + event)}")
    await known_event(request)
    return render(request, "dashboard.html", event=event, user=user, csrf=await csrf_token(request))


async def wall(request: web.Request) -> web.Response:
    event = request.match_info["event"]
    await known_event(request)
    return render(request, "wall.html", event=event)


def routes() -> list[web.AbstractRouteDef]:
    return [
        web.get("/", index),
        web.get("/login", login_page),
        web.post("/login", login),
        web.post("/logout", logout),
        web.get("/events/{event}", dashboard),
        web.get("/wall/{event}", wall),
        web.static("/static", WEB / "static"),
    ]
