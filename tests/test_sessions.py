"""Server-side sessions: a session lives in the store, so ending it (logout, a password
change, `backchannel user remove`, the idle timeout or its lifetime) refuses its cookie
on every instance at the next request, and closes its open dashboard sockets.

`store` is conftest's: every test runs on SQLite and on PostgreSQL.
"""

# The fixtures imported from test_server are requested by name, as parameters that
# shadow the imports: that is how pytest fixtures work, not a redefinition.
# ruff: noqa: F811

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import aiohttp
import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from support import Feed, aiohttp_receive
from test_server import (  # noqa: F401 - fixtures are used by name
    EVENT,
    PASSWORDS,
    TIMEOUT,
    Moderator,
    NewModerator,
    Serve,
    Served,
    http,
    moderator,
    serve,
    served,
)
from yarl import URL

from backchannel.cli import main
from backchannel.server.security import SECURITY, session_cipher_key
from backchannel.store import Store
from backchannel.store.schema import sessions

COOKIE = "backchannel_session"
# Each instance checks its open sockets' sessions this often in these tests.
CHECK_EVERY = 0.5


def cookie_of(m: Moderator) -> str:
    return m.http.cookie_jar.filter_cookies(URL(m.served.origin))[COOKIE].value


def browser_with(served: Served, http: Callable[..., aiohttp.ClientSession], cookie: str) -> Moderator:
    """Another browser (or another instance's client) holding a copy of `cookie`."""
    thief = Moderator(served, http())
    thief.http.cookie_jar.update_cookies({COOKIE: cookie}, URL(served.origin))
    return thief


async def refused_everywhere(m: Moderator, csrf: str) -> None:
    """The session API, a moderation request and the websocket all say 401."""
    async with m.http.get(m.served.url("/api/session")) as resp:
        assert resp.status == 401
    status, _ = await m.post(f"/api/events/{EVENT}/moderate", {"action": "hide", "ids": [1]}, csrf=csrf)
    assert status == 401
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        async with m.http.ws_connect(m.served.ws_url(f"/ws/events/{EVENT}"), origin=m.served.origin):
            pass
    assert refused.value.status == 401


@asynccontextmanager
async def dashboard(m: Moderator) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    async with m.http.ws_connect(m.served.ws_url(f"/ws/events/{EVENT}"), origin=m.served.origin) as ws:
        assert (await Feed(lambda: aiohttp_receive(ws)).frame())["type"] == "hello"
        yield ws


async def closed_by_server(ws: aiohttp.ClientWebSocketResponse, within: float = TIMEOUT) -> float:
    """Wait for the server's 4001 close; how long it took."""
    start = time.monotonic()
    closing = await asyncio.wait_for(ws.receive(), within)
    assert (closing.type, closing.data, closing.extra) == (aiohttp.WSMsgType.CLOSE, 4001, "logged out")
    return time.monotonic() - start


async def test_a_cookie_copied_before_logout_is_refused_after(
    served: Served, moderator: NewModerator, http: Callable[..., aiohttp.ClientSession]
) -> None:
    alice = await moderator("alice")
    thief = browser_with(served, http, cookie_of(alice))
    assert (await thief.session_info())["user"] == "alice"
    async with dashboard(thief) as ws:
        assert (await alice.logout(alice.csrf)).status == 303
        await closed_by_server(ws)
    await refused_everywhere(thief, alice.csrf)


async def test_logout_ends_every_session_of_that_user_only(served: Served, moderator: NewModerator) -> None:
    laptop, phone, bob = await moderator("alice"), await moderator("alice"), await moderator("bob")
    assert (await laptop.logout(laptop.csrf)).status == 303
    await refused_everywhere(phone, phone.csrf)
    assert (await bob.session_info())["user"] == "bob"


async def test_the_store_keeps_only_a_hash_of_the_session_id(served: Served, moderator: NewModerator) -> None:
    alice = await moderator("alice")
    with served.store.engine.connect() as conn:
        stored = list(conn.execute(sa.select(sessions.c.key_hash)).scalars())
    # The cookie is encrypted with the deployment's key; inside it, only the session id.
    key = base64.urlsafe_b64encode(session_cipher_key(served.app[SECURITY].secret))
    inside = json.loads(Fernet(key).decrypt(cookie_of(alice).encode()))
    assert list(inside["session"]) == ["id"]
    assert stored == [hashlib.sha256(inside["session"]["id"].encode()).hexdigest()]


@pytest.mark.parametrize("how", ["password change", "user remove"])
async def test_password_change_and_user_remove_end_sessions_and_close_sockets(
    serve: Serve, http: Callable[..., aiohttp.ClientSession], store: Store, how: str
) -> None:
    served = await serve(session_check_every=CHECK_EVERY)
    alice, bob = Moderator(served, http()), Moderator(served, http())
    await alice.login("alice")
    await bob.login("bob")
    async with dashboard(alice) as alice_ws, dashboard(bob) as bob_ws:
        # The command line, in its own connection to the database, as an operator runs it.
        command = {
            "password change": ["user", "add", "alice", "--password", "a new password"],
            "user remove": ["user", "remove", "alice"],
        }[how]
        assert await asyncio.to_thread(main, [*command, "--db", store.url]) == 0
        await closed_by_server(alice_ws)
        await refused_everywhere(alice, alice.csrf)
        assert not bob_ws.closed
    assert (await bob.session_info())["user"] == "bob"
    if how == "password change":
        assert (await alice.login("alice")).status == 401
        assert (await alice.login("alice", "a new password")).status == 303
    else:
        assert (await alice.login("alice")).status == 401
        assert await asyncio.to_thread(main, ["user", "remove", "alice", "--db", store.url]) == 2


async def test_idle_timeout_and_lifetime_end_a_session(
    serve: Serve, http: Callable[..., aiohttp.ClientSession]
) -> None:
    now = [time.time()]
    served = await serve(
        session_idle=3600, session_lifetime=4 * 3600, session_check_every=CHECK_EVERY, clock=lambda: now[0]
    )
    alice = Moderator(served, http())
    await alice.login("alice")
    # In use: each request within the idle timeout of the last keeps it alive...
    for _ in range(4):  # 50 min apart: 3 h 20 min in all
        now[0] += 3000
        assert (await alice.session_info())["user"] == "alice"
    # ... up to its lifetime (4 h after login), used or not.
    now[0] += 3000  # 4 h 10 min
    await refused_everywhere(alice, alice.csrf)

    await alice.login("alice")
    async with dashboard(alice) as ws:
        now[0] += 3601  # an hour and a second unused
        await closed_by_server(ws)
    await refused_everywhere(alice, alice.csrf)


async def test_logout_on_one_instance_ends_the_session_on_another(
    serve: Serve, http: Callable[..., aiohttp.ClientSession], store: Store
) -> None:
    """Two instances (two apps, each with its own Store and connection pool) on one
    database, sharing only it and the cookie key, as in production. The default check
    interval (2 s), to measure what a deployment gets."""
    secret = Fernet.generate_key().decode()
    with Store(store.url) as other:
        a = await serve(secret=secret)
        b = await serve(on=other, secret=secret)
        alice = Moderator(a, http())
        await alice.login("alice")
        on_b = browser_with(b, http, cookie_of(alice))
        assert (await on_b.session_info())["user"] == "alice"
        async with dashboard(on_b) as ws:
            assert (await alice.logout(alice.csrf)).status == 303
            # The request on B right after is refused: it reads the store.
            async with on_b.http.get(b.url("/api/session")) as resp:
                assert resp.status == 401
            took = await closed_by_server(ws, within=2.0 + TIMEOUT)
        print(f"{store.dialect}: the socket on the other instance closed {took:.2f} s after logout")
        await refused_everywhere(on_b, alice.csrf)
        await b.stop()
