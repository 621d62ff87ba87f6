"""Moderators' sessions: kept in the store, ended everywhere at once.

The encrypted cookie carries only a random session id; the store holds its SHA-256
with the user and the CSRF token (`store/accounts.py`). Every request that reads the
session looks its row up, so a session that was ended (logout, a password change,
`backchannel user remove`) or expired (idle or past its lifetime) is refused by every
instance at its next request, a websocket handshake included.

Open dashboard sockets are registered here by session. The instance where a moderator
logs out closes that user's sockets at once; every instance also checks the sessions
of its open sockets against the store every `session_check_every` seconds and closes
those that ended, so a logout on another instance, a `user remove` from the command
line or an idle timeout reaches them within that interval. No message between
instances is needed: the store is the truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from aiohttp_session import Session
from aiohttp_session.cookie_storage import EncryptedCookieStorage

from backchannel.hub import AiohttpConnection
from backchannel.server.keys import STORE
from backchannel.store.accounts import SessionRules

log = logging.getLogger(__name__)

# Private-use close code (4000-4999): the session ended (logout, password change,
# account removed, expired). The dashboard does not reconnect on it.
CLOSE_LOGGED_OUT = 4001


@dataclass(frozen=True, slots=True)
class Login:
    """A logged-in moderator and the key (SHA-256 of the cookie's id) of their session."""

    user: str
    key: str


def session_key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class StoreSessions(EncryptedCookieStorage):
    """aiohttp-session storage whose cookie holds only a session id that must be live in
    the store. With `auto_secure` the cookie is Secure exactly when the request came over
    HTTPS (a cookie marked Secure would not come back over plain HTTP, and one left
    unmarked on HTTPS could leak over a later plain request)."""

    def __init__(
        self,
        key: bytes,
        *,
        app: web.Application,
        rules: SessionRules,
        clock: Callable[[], float],
        auto_secure: bool,
        **params: Any,
    ) -> None:
        super().__init__(key, max_age=int(rules.lifetime.total_seconds()), **params)
        self._app = app
        self.rules = rules
        self._clock = clock
        self.auto_secure = auto_secure

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    async def load_session(self, request: web.Request) -> Session:
        cookie = await super().load_session(request)
        session_id = cookie.get("id")
        if not isinstance(session_id, str):
            return await self.new_session()
        store = self._app[STORE]
        try:
            row = await asyncio.to_thread(
                store.session, session_key(session_id), now=self.now(), rules=self.rules
            )
        except sa.exc.DBAPIError:
            # Whether the session is live cannot be known: neither serve the request nor
            # say 401, which would send the dashboard to the login page. A few seconds is
            # how long a database restart takes.
            log.warning("could not read a session from the store", exc_info=True)
            raise web.HTTPServiceUnavailable(
                text="the database is unavailable; try again", headers={"Retry-After": "5"}
            ) from None
        if row is None:
            return await self.new_session()
        data = {"created": int(row.created_at.timestamp()), "session": {"user": row.user, "csrf": row.csrf}}
        return Session(session_id, data=data, new=False)  # type: ignore[arg-type]

    async def save_session(
        self, request: web.Request, response: web.StreamResponse, session: Session
    ) -> None:
        store = self._app[STORE]
        user, csrf = session.get("user"), session.get("csrf")
        if session.empty or not isinstance(user, str) or not isinstance(csrf, str):
            # Logged out, or never logged in: nothing to keep, no cookie.
            if session.identity is not None:
                await asyncio.to_thread(store.end_session, session_key(session.identity))
            await super().save_session(request, response, Session(None, data={}, new=True))
            return
        if not session.new:
            return  # the row already holds the user and the token
        session_id = secrets.token_urlsafe(32)
        await asyncio.to_thread(
            store.start_session, session_key(session_id), user, csrf, now=self.now(), rules=self.rules
        )
        session.set_new_identity(session_id)
        cookie = Session(None, data=None, new=True, max_age=self.max_age)
        cookie["id"] = session_id
        await super().save_session(request, response, cookie)
        morsel = response.cookies.get(self.cookie_name)
        if self.auto_secure and request.secure and morsel is not None:
            morsel["secure"] = True


SESSIONS = web.AppKey("sessions", StoreSessions)
# Each session's open dashboard sockets, to close when it ends.
SOCKETS = web.AppKey("session_sockets", dict[Login, set[AiohttpConnection]])


def login_of(session: Session) -> Login | None:
    user = session.get("user")
    if not isinstance(user, str) or session.identity is None:
        return None
    return Login(user, session_key(session.identity))


@contextlib.contextmanager
def track_socket(app: web.Application, login: Login, conn: AiohttpConnection) -> Iterator[None]:
    """Register a moderator's socket for as long as it is served."""
    sockets = app[SOCKETS]
    sockets.setdefault(login, set()).add(conn)
    try:
        yield
    finally:
        mine = sockets.get(login)
        if mine is not None:
            mine.discard(conn)
            if not mine:
                del sockets[login]


async def close_sockets(app: web.Application, logins: list[Login]) -> None:
    """All at once, each close bounded in time (a client that does not read is cut
    off), so no client can hold up a logout."""
    sockets = app[SOCKETS]
    conns = [conn for login in logins for conn in sockets.pop(login, set())]
    await asyncio.gather(*(conn.close(CLOSE_LOGGED_OUT, "logged out") for conn in conns))


async def end_user_sessions(app: web.Application, user: str) -> None:
    """Logout: every session of `user` ends in the store (so on every instance), and this
    instance's sockets of theirs close now; other instances' at their next check."""
    await asyncio.to_thread(app[STORE].end_sessions, user)
    await close_sockets(app, [login for login in app[SOCKETS] if login.user == user])


async def close_ended_sockets(app: web.Application) -> None:
    logins = list(app[SOCKETS].keys())
    if not logins:
        return
    storage = app[SESSIONS]
    keys = {login.key for login in logins}
    live = await asyncio.to_thread(app[STORE].live_sessions, keys, now=storage.now(), rules=storage.rules)
    await close_sockets(app, [login for login in logins if login.key not in live])


def session_checker(every: float) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context that runs `close_ended_sockets` every `every` seconds."""

    async def check(app: web.Application) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await close_ended_sockets(app)
            except Exception:
                # The store being down ends no session: try again at the next check.
                log.warning("could not check the sessions of open sockets", exc_info=True)

    async def context(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(check(app))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return context


def rules(idle: float, lifetime: float) -> SessionRules:
    # Marking a session used costs a write; a tenth of the idle timeout (at most a
    # minute) is precise enough for an idle timeout of hours.
    touch = min(60.0, idle / 10)
    return SessionRules(
        idle=timedelta(seconds=idle),
        lifetime=timedelta(seconds=lifetime),
        touch_every=timedelta(seconds=touch),
    )
