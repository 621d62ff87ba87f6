"""The server over HTTP: a real aiohttp server on a free port, a real store, and a real
client with a cookie jar. Authentication, CSRF, origin checks, login throttling,
session cookies and security headers (DESIGN.md, security checklist 4 to 8).

The fixtures here (`serve`, `Moderator`, `msg`) also serve `test_server_ws.py`.
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from cryptography.fernet import Fernet
from support import T0, msg

from backchannel.core.models import Message
from backchannel.hub import Hub
from backchannel.server.app import create_app, pipeline_for
from backchannel.server.security import SecuritySettings, hash_password
from backchannel.store import Store

# websockets' tests/utils.py habit: one time unit, scaled on slow machines.
MS = 0.001 * float(os.environ.get("BACKCHANNEL_TEST_TIMEOUT_FACTOR", "1"))
# How long an expected response or frame may take; passing tests never wait it out.
TIMEOUT = 5000 * MS

EVENT = "slz"
EVIL = "https://evil.example"
PASSWORDS = {"alice": "correct horse alice", "bob": "correct horse bob"}


@functools.cache
def password_hash(password: str) -> str:
    """argon2 is slow on purpose: hash each test password once per run."""
    return hash_password(password)


# -- the server under test ---------------------------------------------------------------


@dataclass
class Served:
    app: web.Application
    runner: web.AppRunner
    store: Store
    port: int
    scheme: str = "http"
    stopped: bool = False

    @property
    def origin(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.origin + path

    def ws_url(self, path: str, **query: object) -> str:
        params = "&".join(f"{k}={v}" for k, v in query.items())
        return f"ws://127.0.0.1:{self.port}{path}" + (f"?{params}" if params else "")

    async def add(self, messages: list[Message]) -> list[int]:
        """Ingest through the app's own pipeline; the ids of the new messages."""
        pipeline = pipeline_for(self.app, EVENT)
        await pipeline.put_many(messages)
        return [m.id for m in await pipeline.flush()]

    async def stop(self) -> None:
        """What SIGTERM does: on_shutdown closes the websockets, then the server stops."""
        if not self.stopped:
            self.stopped = True
            await self.runner.cleanup()


Serve = Callable[..., Awaitable[Served]]


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    """SQLite only for the HTTP checks (this overrides conftest's, which adds PostgreSQL):
    nothing here depends on the database. The websocket tests run on both."""
    s = Store(sqlite_url)
    yield s
    s.close()


@pytest.fixture
async def serve(store: Store) -> AsyncIterator[Serve]:
    """Start the real app (create_app) on a free port; an event and two moderators exist."""
    store.event(EVENT)
    for user, password in PASSWORDS.items():
        store.add_user(user, password_hash(password))
    async with AsyncExitStack() as stack:

        async def start(
            hub: Hub | None = None,
            sndbuf: int | None = None,
            ssl_context: ssl.SSLContext | None = None,
            on: Store | None = None,
            **settings: Any,
        ) -> Served:
            """`on`: another Store (another instance's) to serve; `settings` go to SecuritySettings."""
            settings.setdefault("secret", Fernet.generate_key().decode())
            security = SecuritySettings(**settings)
            app = create_app(on or store, security=security, hub=hub)
            # AppRunner as in production: shutdown runs on_shutdown like SIGTERM does.
            runner = web.AppRunner(app, handle_signals=False)
            await runner.setup()
            served = Served(app, runner, on or store, 0, "https" if ssl_context else "http")
            stack.push_async_callback(served.stop)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            if sndbuf is not None:
                # Accepted sockets inherit it: a client that stops reading stalls the
                # server's writes after kilobytes, not after megabytes of autotuning.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
            sock.bind(("127.0.0.1", 0))
            site = web.SockSite(runner, sock, ssl_context=ssl_context)
            await site.start()
            served.port = runner.addresses[0][1]
            return served

        yield start


@pytest.fixture
async def served(serve: Serve) -> Served:
    return await serve()


@pytest.fixture
async def http() -> AsyncIterator[Callable[..., aiohttp.ClientSession]]:
    """Fresh client sessions (one browser each), closed at the end of the test."""
    sessions: list[aiohttp.ClientSession] = []

    def new(address: str | None = None) -> aiohttp.ClientSession:
        """`address`: the browser's own (any of 127.0.0.0/8 on Linux), else 127.0.0.1."""
        # unsafe=True: the jar keeps cookies for an IP address host (127.0.0.1).
        session = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            timeout=aiohttp.ClientTimeout(total=TIMEOUT),
            connector=aiohttp.TCPConnector(local_addr=(address, 0)) if address else None,
        )
        sessions.append(session)
        return session

    yield new
    for session in sessions:
        await session.close()


@dataclass
class Moderator:
    """A browser of one moderator: its cookie jar and the CSRF token its page would hold."""

    served: Served
    http: aiohttp.ClientSession
    user: str = ""
    csrf: str = ""
    cookies: list[str] = field(default_factory=list)

    async def login(self, user: str, password: str | None = None) -> aiohttp.ClientResponse:
        form = {"username": user, "password": PASSWORDS[user] if password is None else password, "next": "/"}
        async with self.http.post(self.served.url("/login"), data=form, allow_redirects=False) as resp:
            await resp.read()
            self.cookies = resp.headers.getall("Set-Cookie", [])
        if resp.status == 303:
            self.user = user
            self.csrf = (await self.session_info())["csrf"]
        return resp

    async def session_info(self) -> dict[str, Any]:
        async with self.http.get(self.served.url("/api/session")) as resp:
            assert resp.status == 200, await resp.text()
            assert resp.headers["Cache-Control"] == "no-store"
            return dict(await resp.json())

    async def post(
        self, path: str, body: dict[str, Any], *, csrf: str | None = None, origin: str | None = None
    ) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json", "Origin": origin or self.served.origin}
        token = self.csrf if csrf is None else csrf
        if token:
            headers["X-CSRF-Token"] = token
        async with self.http.post(self.served.url(path), data=orjson.dumps(body), headers=headers) as resp:
            data = await resp.read()
            return resp.status, orjson.loads(data) if resp.content_type == "application/json" else data

    async def moderate(self, action: str, ids: list[int], action_id: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"action": action, "ids": ids}
        if action_id is not None:
            body["action_id"] = action_id
        status, data = await self.post(f"/api/events/{EVENT}/moderate", body)
        assert status == 200, data
        return dict(data)

    async def event_action(self, action: str, subject: str = "") -> dict[str, Any]:
        status, data = await self.post(
            f"/api/events/{EVENT}/event-actions", {"action": action, "subject": subject}
        )
        assert status == 200, data
        return dict(data)

    async def logout(self, csrf: str | None) -> aiohttp.ClientResponse:
        form = {"csrf": csrf} if csrf is not None else {}
        headers = {"Origin": self.served.origin}
        async with self.http.post(
            self.served.url("/logout"), data=form, headers=headers, allow_redirects=False
        ) as resp:
            await resp.read()
            return resp


NewModerator = Callable[..., Awaitable[Moderator]]


@pytest.fixture
def moderator(served: Served, http: Callable[[], aiohttp.ClientSession]) -> NewModerator:
    async def new(user: str | None = "alice") -> Moderator:
        m = Moderator(served, http())
        if user is not None:
            resp = await m.login(user)
            assert resp.status == 303
        return m

    return new


def set_cookie(headers: list[str]) -> SimpleCookie:
    cookie: SimpleCookie = SimpleCookie()
    for header in headers:
        cookie.load(header)
    return cookie


# -- 1. authentication ---------------------------------------------------------------------

MODERATOR_GETS = [
    f"/api/events/{EVENT}/messages",
    f"/api/events/{EVENT}/questions",
    f"/api/events/{EVENT}/stats",
    f"/api/events/{EVENT}/settings",
    "/api/session",
]
MODERATOR_POSTS = [
    (f"/api/events/{EVENT}/moderate", {"action": "hide", "ids": [1]}),
    (f"/api/events/{EVENT}/event-actions", {"action": "premoderation-on"}),
]


async def test_moderator_api_needs_a_session(served: Served, moderator: NewModerator) -> None:
    anonymous = await moderator(None)
    for path in MODERATOR_GETS:
        async with anonymous.http.get(served.url(path)) as resp:
            assert resp.status == 401, path
            assert (await resp.json()) == {"error": "login required"}
    for path, body in MODERATOR_POSTS:
        # Even with an Origin and a token-looking header: no session, no write.
        status, data = await anonymous.post(path, body, csrf="forged")
        assert (status, data) == (401, {"error": "login required"}), path


async def test_pages_redirect_to_login_without_a_session(served: Served, moderator: NewModerator) -> None:
    anonymous = await moderator(None)
    for path, target in ((f"/events/{EVENT}", f"/login?next=/events/{EVENT}"), ("/", "/login")):
        async with anonymous.http.get(served.url(path), allow_redirects=False) as resp:
            assert resp.status == 302
            assert resp.headers["Location"] == target


async def test_logged_in_moderator_reads_the_api_and_pages(served: Served, moderator: NewModerator) -> None:
    alice = await moderator("alice")
    await served.add([msg(1), msg(2)])
    assert (await alice.session_info())["user"] == "alice"
    async with alice.http.get(served.url(f"/api/events/{EVENT}/messages")) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert [i["text"] for i in body["items"]] == ["message 2 #slz", "message 1 #slz"]
    async with alice.http.get(served.url(f"/events/{EVENT}")) as resp:
        assert resp.status == 200
        # The token the dashboard's script sends (its <meta name="csrf-token">) is the session's.
        assert f'<meta name="csrf-token" content="{alice.csrf}">' in await resp.text()
    async with alice.http.get(served.url("/events/nosuch")) as resp:
        assert resp.status == 404


async def test_wall_api_is_public(served: Served, moderator: NewModerator) -> None:
    anonymous = await moderator(None)
    await served.add([msg(1)])
    async with anonymous.http.get(served.url(f"/api/wall/{EVENT}")) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert [i["text"] for i in body["items"]] == ["message 1 #slz"]
    assert "actor" not in orjson.dumps(body).decode()
    async with anonymous.http.get(served.url(f"/wall/{EVENT}")) as resp:
        assert resp.status == 200


async def test_sources_api_reports_states_and_gaps(served: Served, moderator: NewModerator) -> None:
    anonymous = await moderator(None)
    async with anonymous.http.get(served.url(f"/api/events/{EVENT}/sources")) as resp:
        assert resp.status == 401
        assert (await resp.json()) == {"error": "login required"}

    alice = await moderator("alice")
    async with alice.http.get(served.url(f"/api/events/{EVENT}/sources")) as resp:
        assert resp.status == 200
        assert await resp.json() == {"sources": [], "gaps": []}

    next_try = T0 + timedelta(minutes=5)
    served.store.set_source_state(
        EVENT,
        "x:search",
        "backing off",
        detail="rate limited",
        last_error="HTTP 503",
        next_try=next_try,
        collected=7,
    )
    served.store.record_gap(EVENT, "x:search", T0, T0 + timedelta(minutes=3), "stream dropped")
    async with alice.http.get(served.url(f"/api/events/{EVENT}/sources")) as resp:
        assert resp.status == 200
        body = await resp.json()
    [source] = body["sources"]
    updated_at = source.pop("updated_at")
    assert datetime.fromisoformat(updated_at).tzinfo is not None
    assert source == {
        "source": "x:search",
        "state": "backing off",
        "detail": "rate limited",
        "last_error": "HTTP 503",
        "next_try": next_try.isoformat(),
        "collected": 7,
    }
    assert body["gaps"] == [
        {
            "source": "x:search",
            "from": T0.isoformat(),
            "to": (T0 + timedelta(minutes=3)).isoformat(),
            "reason": "stream dropped",
        }
    ]
    async with alice.http.get(served.url("/api/events/nosuch/sources")) as resp:
        assert resp.status == 404


# -- 3. CSRF and origin on writes -------------------------------------------------------------


async def test_moderation_needs_the_sessions_csrf_token(served: Served, moderator: NewModerator) -> None:
    alice = await moderator("alice")
    bob = await moderator("bob")
    [mid] = await served.add([msg(1)])
    path = f"/api/events/{EVENT}/moderate"
    body = {"action": "star", "ids": [mid]}

    async with alice.http.post(served.url(path), json=body, headers={"Origin": served.origin}) as resp:
        assert resp.status == 403  # no header at all
    for wrong in ("nope", bob.csrf, alice.csrf + "x"):
        status, data = await alice.post(path, body, csrf=wrong)
        assert (status, data) == (403, {"error": "missing or bad CSRF token"})
    # The right token from another site is still refused.
    status, data = await alice.post(path, body, origin=EVIL)
    assert (status, data) == (403, {"error": "cross-origin request"})
    status, _ = await alice.post(
        f"/api/events/{EVENT}/event-actions", {"action": "mute", "subject": "x"}, origin=EVIL
    )
    assert status == 403

    status, data = await alice.post(path, body)
    assert status == 200
    [change] = data["changes"]
    assert (change["action"], change["actor"], change["message"]["starred"]) == ("star", "alice", True)


async def test_allowed_origin_may_post(serve: Serve, http: Callable[[], aiohttp.ClientSession]) -> None:
    # As an operator may write it; browsers send https://wall.example.org.
    served = await serve(allowed_origins=(" HTTPS://Wall.Example.org/",))
    alice = Moderator(served, http())
    await alice.login("alice")
    [mid] = await served.add([msg(1)])
    status, _ = await alice.post(
        f"/api/events/{EVENT}/moderate", {"action": "star", "ids": [mid]}, origin="https://wall.example.org"
    )
    assert status == 200


async def test_no_side_effects_on_get(served: Served, moderator: NewModerator) -> None:
    alice = await moderator("alice")
    async with alice.http.get(served.url(f"/api/events/{EVENT}/moderate")) as resp:
        assert resp.status == 405
    async with alice.http.get(served.url("/logout")) as resp:
        assert resp.status == 405
    assert (await alice.session_info())["user"] == "alice"


async def test_logout_needs_the_csrf_form_field(served: Served, moderator: NewModerator) -> None:
    alice = await moderator("alice")
    for wrong in (None, "", "nope"):
        resp = await alice.logout(wrong)
        assert resp.status == 403
    assert (await alice.session_info())["user"] == "alice"
    resp = await alice.logout(alice.csrf)
    assert (resp.status, resp.headers["Location"]) == (303, "/login")
    async with alice.http.get(served.url("/api/session")) as resp:
        assert resp.status == 401


# -- 4. login --------------------------------------------------------------------------------


async def test_wrong_password_is_401(served: Served, moderator: NewModerator) -> None:
    m = await moderator(None)
    assert (await m.login("alice", "wrong")).status == 401
    assert (await m.login("nobody", "wrong")).status == 401
    async with m.http.get(served.url("/api/session")) as resp:
        assert resp.status == 401


async def test_login_redirects_only_to_our_own_paths(
    serve: Serve, http: Callable[[], aiohttp.ClientSession]
) -> None:
    served = await serve()
    m = Moderator(served, http())
    for given, expected in (
        ("/events/slz", "/events/slz"),
        ("//evil.example/", "/"),
        ("https://evil.example", "/"),
        ("/\\evil.example", "/"),
        ("/\t/evil.example", "/"),  # browsers drop the tab: //evil.example
        ("/\n/evil.example", "/"),
    ):
        form = {"username": "alice", "password": PASSWORDS["alice"], "next": given}
        async with m.http.post(served.url("/login"), data=form, allow_redirects=False) as resp:
            assert (resp.status, resp.headers["Location"]) == (303, expected)


async def test_cross_origin_login_is_refused(served: Served, moderator: NewModerator) -> None:
    m = await moderator(None)
    form = {"username": "alice", "password": PASSWORDS["alice"]}
    for origin in (EVIL, "null"):  # null: a sandboxed frame or a privacy-stripped origin
        async with m.http.post(served.url("/login"), data=form, headers={"Origin": origin}) as resp:
            assert resp.status == 403
    async with m.http.post(served.url("/login"), data=form, headers={"Origin": served.origin}) as resp:
        assert resp.status == 200  # followed the redirect to "/"


async def test_login_is_throttled_per_account_and_address(served: Served, moderator: NewModerator) -> None:
    m = await moderator(None)
    for _ in range(5):
        assert (await m.login("alice", "wrong")).status == 401
    for password in ("wrong", None):  # the right password too, once over the limit
        resp = await m.login("alice", password)
        assert resp.status == 429
        assert 1 <= int(resp.headers["Retry-After"]) <= 61
    # Per account: another moderator on the same address still gets in.
    assert (await m.login("bob")).status == 303


async def test_login_is_throttled_per_address(
    serve: Serve, http: Callable[..., aiohttp.ClientSession]
) -> None:
    served = await serve(login_per_address=3)
    m = Moderator(served, http())
    for user in ("alice", "bob", "carol"):
        assert (await m.login(user, "wrong")).status == 401
    # Three accounts tried from one address: a fourth try is refused, right password or not.
    resp = await m.login("bob")
    assert resp.status == 429
    assert int(resp.headers["Retry-After"]) >= 1


async def test_failures_from_another_address_do_not_block_the_right_password(
    served: Served, http: Callable[..., aiohttp.ClientSession]
) -> None:
    attacker = Moderator(served, http("127.0.0.2"))
    for _ in range(5):
        assert (await attacker.login("alice", "wrong")).status == 401
    assert (await attacker.login("alice", "wrong")).status == 429
    # Alice, from her own address, is not locked out by them.
    alice = Moderator(served, http("127.0.0.1"))
    assert (await alice.login("alice")).status == 303
    assert (await alice.session_info())["user"] == "alice"
    # And the attacker is still held back.
    assert (await attacker.login("alice")).status == 429


async def test_only_failures_count_and_a_success_clears_its_account(
    served: Served, moderator: NewModerator
) -> None:
    m = await moderator(None)
    for _ in range(8):
        assert (await m.login("alice")).status == 303
    for _ in range(3):  # after 4 failures, a success starts the count again
        for _ in range(4):
            assert (await m.login("alice", "wrong")).status == 401
        assert (await m.login("alice")).status == 303


async def test_guesses_sent_at_once_do_not_overrun_the_limit(served: Served, moderator: NewModerator) -> None:
    m = await moderator(None)
    statuses = await asyncio.gather(*(m.login("alice", f"wrong {i}") for i in range(15)))
    codes = sorted(r.status for r in statuses)
    assert codes.count(401) <= 5, codes
    assert set(codes) <= {401, 429}, codes
    assert (await m.login("alice")).status == 429


async def test_forwarded_address_is_read_only_from_a_trusted_proxy(
    serve: Serve, http: Callable[..., aiohttp.ClientSession]
) -> None:
    served = await serve(login_per_address=3, trusted_proxies=("127.0.0.1", "10.0.0.0/8"))

    async def login(
        user: str, password: str | None, headers: dict[str, str], address: str = "127.0.0.1"
    ) -> int:
        form = {"username": user, "password": PASSWORDS[user] if password is None else password}
        async with http(address).post(
            served.url("/login"), data=form, headers=headers, allow_redirects=False
        ) as resp:
            return resp.status

    # Through the proxy (127.0.0.1), three clients' failures from 203.0.113.5 fill its limit...
    for user in ("alice", "bob", "carol"):
        assert await login(user, "wrong", {"X-Forwarded-For": "203.0.113.5"}) == 401
    assert await login("bob", None, {"X-Forwarded-For": "203.0.113.5"}) == 429
    # ... the right-most address that is not a proxy of ours counts: what the client
    # wrote before it (a forged "198.51.100.7") does not, nor do our proxies after it.
    assert await login("bob", None, {"X-Forwarded-For": "198.51.100.7, 203.0.113.5, 10.1.2.3"}) == 429
    assert await login("bob", None, {"Forwarded": "for=203.0.113.5;proto=https"}) == 429
    # ... while another client behind the same proxy logs in.
    assert await login("bob", None, {"X-Forwarded-For": "203.0.113.5, 198.51.100.7"}) == 303
    assert await login("bob", None, {"Forwarded": 'for="[2001:db8::1]:4711"'}) == 303

    # A peer that is not a trusted proxy is counted by its own address, whatever it forwards.
    for n, user in enumerate(("alice", "bob", "carol")):
        assert await login(user, "wrong", {"X-Forwarded-For": f"192.0.2.{n}"}, "127.0.0.2") == 401
    assert await login("bob", None, {"X-Forwarded-For": "192.0.2.99"}, "127.0.0.2") == 429


async def test_session_cookie_is_httponly_strict_and_new_at_login(
    served: Served, moderator: NewModerator
) -> None:
    alice = await moderator("alice")
    assert len(alice.cookies) == 1  # one Set-Cookie: the session
    cookie = set_cookie(alice.cookies)["backchannel_session"]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/"
    assert not cookie["secure"]  # plain HTTP with cookie_secure=auto
    first, first_csrf = cookie.value, alice.csrf

    # A session fixed beforehand (here: alice's, still in the jar) is replaced at login.
    assert (await alice.login("bob")).status == 303
    second = set_cookie(alice.cookies)["backchannel_session"].value
    assert second != first
    info = await alice.session_info()
    assert info["user"] == "bob"
    assert info["csrf"] != first_csrf


async def test_secure_cookie_setting(serve: Serve, http: Callable[[], aiohttp.ClientSession]) -> None:
    served = await serve(cookie_secure="true")
    m = Moderator(served, http())
    form = {"username": "alice", "password": PASSWORDS["alice"]}
    async with m.http.post(served.url("/login"), data=form, allow_redirects=False) as resp:
        assert resp.status == 303
        cookie = set_cookie(resp.headers.getall("Set-Cookie"))["__Host-backchannel"]
    assert cookie["secure"] is True
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/"
    assert not cookie["domain"]  # __Host- cookies carry no Domain


def self_signed_context() -> ssl.SSLContext:
    """A TLS server context with a throwaway certificate for 127.0.0.1."""
    import ipaddress
    import tempfile

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    with tempfile.TemporaryDirectory() as tmp:
        cert_file, key_file = f"{tmp}/cert.pem", f"{tmp}/key.pem"
        with open(cert_file, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        with open(key_file, "wb") as f:
            f.write(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        context.load_cert_chain(cert_file, key_file)
    return context


async def test_auto_cookie_is_secure_over_https(serve: Serve) -> None:
    served = await serve(ssl_context=self_signed_context())
    form = {"username": "alice", "password": PASSWORDS["alice"]}
    # The client trusts the throwaway certificate by not checking it.
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False)) as client,
        client.post(
            served.url("/login"), data=form, headers={"Origin": served.origin}, allow_redirects=False
        ) as resp,
    ):
        assert resp.status == 303
        cookie = set_cookie(resp.headers.getall("Set-Cookie"))["backchannel_session"]
    assert cookie["secure"] is True
    assert cookie["httponly"] is True


# -- 8. security headers -----------------------------------------------------------------------


async def test_security_headers_on_pages_redirects_and_api(served: Served, moderator: NewModerator) -> None:
    alice = await moderator("alice")
    anonymous = await moderator(None)
    checked = [
        (anonymous, "/login", 200),
        (anonymous, f"/wall/{EVENT}", 200),
        (anonymous, f"/events/{EVENT}", 302),  # raised redirects too
        (anonymous, f"/api/events/{EVENT}/messages", 401),  # and raised errors
        (anonymous, f"/api/wall/{EVENT}", 200),
        (alice, f"/events/{EVENT}", 200),
        (alice, "/", 200),
    ]
    for client, path, status in checked:
        async with client.http.get(served.url(path), allow_redirects=False) as resp:
            assert resp.status == status, path
            csp = resp.headers.get("Content-Security-Policy", "")
            directives = dict([*d.strip().split(" ", 1), ""][:2] for d in csp.split(";") if d.strip())
            assert "'unsafe-inline'" not in csp, path
            assert "'unsafe-eval'" not in csp, path
            assert directives.get("frame-ancestors") == "'none'", path
            assert directives.get("object-src") == "'none'", path
            assert "'self'" in directives.get("script-src", ""), path
            assert resp.headers.get("X-Frame-Options") == "DENY", path
            assert resp.headers.get("X-Content-Type-Options") == "nosniff", path
            # same-origin: "no-referrer" would make browsers post forms with Origin: null.
            assert resp.headers.get("Referrer-Policy") == "same-origin", path


async def test_bad_requests_are_400(served: Served, moderator: NewModerator) -> None:
    alice = await moderator("alice")
    [mid] = await served.add([msg(1)])
    for query in ("limit=-1", "limit=0", "limit=201", "limit=x", "status=bogus", "starred=maybe"):
        async with alice.http.get(served.url(f"/api/events/{EVENT}/messages?{query}")) as resp:
            assert resp.status == 400, query
    path = f"/api/events/{EVENT}/moderate"
    for body in (
        {"action": "explode", "ids": [mid]},
        {"action": "hide", "ids": []},
        {"action": "hide", "ids": [True]},  # JSON true is not message 1
        {"action": "hide", "ids": str(mid)},
        {"action": "hide", "ids": [mid], "action_id": ""},
    ):
        status, _ = await alice.post(path, body)
        assert status == 400, body
    status, _ = await alice.post(path, {"action": "hide", "ids": [mid + 1]})
    assert status == 404
    status, _ = await alice.post(
        f"/api/events/{EVENT}/event-actions", {"action": "block", "subject": "nocolon"}
    )
    assert status == 400
    async with alice.http.get(served.url("/api/events/nosuch/messages")) as resp:
        assert resp.status == 404
    async with alice.http.get(served.url(f"/api/events/{EVENT}/messages")) as resp:
        assert [i["status"] for i in (await resp.json())["items"]] == ["new"]


async def test_oversized_request_body_is_refused(served: Served, moderator: NewModerator) -> None:
    alice = await moderator("alice")
    body = {"action": "hide", "ids": [1], "pad": "x" * (70 * 1024)}
    status, _ = await alice.post(f"/api/events/{EVENT}/moderate", body)
    assert status == 413
