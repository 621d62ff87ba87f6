"""Sessions, passwords, CSRF, origin and Host checks, login throttling and security
headers.

Everything a request passes through before a view sees it. Views never read cookies
or headers for authorisation themselves: they call `require_moderator`. Sessions live
in the store (`sessions.py`); the login throttle counts failures per client address and
per (account, address), the address read from a forwarding header only when the peer
is a trusted proxy.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import logging
import math
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp_session import get_session, new_session
from aiohttp_session import setup as setup_session
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet
from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from backchannel.server import sessions
from backchannel.server.keys import STORE

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_hasher = PasswordHasher()
# A hash to verify against when the user does not exist, so timing does not tell.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))

# img-src: the pages show no image but our own (the favicon); message images are
# never loaded, so no other site learns who watches the wall.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class SecuritySettings:
    secret: str = ""
    allowed_origins: tuple[str, ...] = ()
    cookie_secure: str = "auto"  # "true" | "false" | "auto"
    # Failed logins per minute: per account from one client address, and per address.
    login_per_pair: int = 5
    login_per_address: int = 20
    # Proxies (addresses or networks) whose X-Forwarded-For / Forwarded header names the client.
    trusted_proxies: tuple[str, ...] = ()
    # A session ends after this long unused (the open dashboard polls every 30 s), or
    # this long after login, whichever comes first.
    session_idle: float = 2 * 3600
    session_lifetime: float = 12 * 3600
    # How often each instance checks that its open sockets' sessions are still live.
    session_check_every: float = 2.0
    # Seconds since the epoch: the sessions' clock (tests move it).
    clock: Callable[[], float] = time.time
    # Open websockets in all (0: half the file-descriptor limit) and per client address
    # (0: no cap); see `limits.py`.
    max_sockets: int = 0
    max_sockets_per_address: int = 100
    trusted_networks: tuple[IPNetwork, ...] = field(init=False, default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        # Compared as browsers send an Origin: scheme://host[:port], lower case, no slash.
        origins = tuple(o.strip().rstrip("/").lower() for o in self.allowed_origins if o.strip())
        object.__setattr__(self, "allowed_origins", origins)
        object.__setattr__(self, "trusted_networks", parse_networks(self.trusted_proxies))


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Addresses and CIDR networks (`10.0.0.5`, `10.0.0.0/8`, `fd00::/8`)."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{value.strip()!r} is not an IP address or network") from None
    return tuple(networks)


def session_cipher_key(secret: str) -> bytes:
    if not secret:
        log.warning("BACKCHANNEL_SECRET is not set: sessions will not survive a restart")
        return base64.urlsafe_b64decode(Fernet.generate_key())
    try:
        key = base64.urlsafe_b64decode(secret)
    except ValueError as exc:
        raise ValueError("BACKCHANNEL_SECRET must be 32 url-safe base64-encoded bytes") from exc
    if len(key) != 32:
        raise ValueError("BACKCHANNEL_SECRET must be 32 url-safe base64-encoded bytes")
    return key


def setup_security(app: web.Application, settings: SecuritySettings) -> None:
    """Needs the app's store (`keys.STORE`): sessions live there."""
    if settings.cookie_secure not in ("true", "false", "auto"):
        raise ValueError("BACKCHANNEL_COOKIE_SECURE must be true, false or auto")
    secure = settings.cookie_secure == "true"
    storage = sessions.StoreSessions(
        session_cipher_key(settings.secret),
        app=app,
        rules=sessions.rules(settings.session_idle, settings.session_lifetime),
        clock=settings.clock,
        auto_secure=settings.cookie_secure == "auto",
        cookie_name="__Host-backchannel" if secure else "backchannel_session",
        httponly=True,
        secure=secure,
        samesite="Strict",
        path="/",
    )
    setup_session(app, storage)
    app[sessions.SESSIONS] = storage
    app[sessions.SOCKETS] = {}
    app.cleanup_ctx.append(sessions.session_checker(settings.session_check_every))
    app.middlewares.append(security_headers)
    app.middlewares.append(host_check)
    app.on_response_prepare.append(_response_headers)
    app[LOGIN_LIMITER] = LoginLimiter(settings.login_per_pair, settings.login_per_address)
    app[SECURITY] = settings


@dataclass(frozen=True, slots=True)
class LoginResult:
    ok: bool
    retry_after: int | None = None  # seconds, when the attempt was refused unchecked


class LoginLimiter:
    """Moving-window throttle on failed logins, per client address and per (account,
    address) pair. Only failures count, so failures from elsewhere never block a right
    password; a success clears its pair. An attempt being checked counts as a failure
    until it is known, so guesses sent in parallel cannot overrun a limit."""

    def __init__(self, per_pair: int, per_address: int) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._pair = RateLimitItemPerMinute(per_pair)
        self._address = RateLimitItemPerMinute(per_address)
        self._pending: Counter[tuple[str, ...]] = Counter()

    async def attempt(self, account: str, address: str, check: Callable[[], Awaitable[bool]]) -> LoginResult:
        # The address first among the identifiers: it holds no "/", which limits joins them with.
        pair = ("pair", address, account.lower())
        limits = ((self._address, ("address", address)), (self._pair, pair))
        for item, ids in limits:
            window = self._limiter.get_window_stats(item, *ids)
            if window.remaining - self._pending[ids] <= 0:
                wait = window.reset_time - time.time() if window.remaining <= 0 else 1
                return LoginResult(False, retry_after=max(1, math.ceil(wait)))
        for _, ids in limits:
            self._pending[ids] += 1
        ok = False
        try:
            ok = await check()
        finally:
            for item, ids in limits:
                self._pending[ids] -= 1
                if not self._pending[ids]:
                    del self._pending[ids]
                if not ok:
                    self._limiter.hit(item, *ids)
        if ok:
            self._limiter.clear(self._pair, *pair)
        return LoginResult(ok)


LOGIN_LIMITER = web.AppKey("login_limiter", LoginLimiter)
SECURITY = web.AppKey("security_settings", SecuritySettings)


def _address(token: str) -> IPAddress | None:
    """An address from a forwarding header's entry: `1.2.3.4`, `1.2.3.4:80`, `[::1]:80`, `::1`."""
    token = token.strip()
    if token.startswith("["):
        token = token[1:].partition("]")[0]
    elif token.count(":") == 1:
        token = token.partition(":")[0]
    try:
        address = ipaddress.ip_address(token)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a dual-stack socket's view of an IPv4 peer
    return address


def _forwarded_for(request: web.Request) -> list[str]:
    """The client and the proxies before the last one, left to right. X-Forwarded-For
    when present (what nginx sets), else RFC 7239's Forwarded."""
    values = request.headers.getall("X-Forwarded-For", [])
    if values:
        return [hop.strip() for value in values for hop in value.split(",") if hop.strip()]
    return [str(element["for"]) for element in request.forwarded if element.get("for")]


def client_address(request: web.Request) -> str:
    """The address a request came from: the peer, or, when the peer is a trusted proxy,
    the right-most address in its forwarding header that is not one of our proxies
    (anything left of that was written by the client and may be forged)."""
    trusted = request.app[SECURITY].trusted_networks
    peer = request.remote or "?"
    address = _address(peer)
    if address is None or not any(address in net for net in trusted):
        return str(address or peer)
    hops = _forwarded_for(request)
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            return hop  # a proxy of ours wrote no address ("unknown"): key on what it wrote
        if not any(address in net for net in trusted):
            return str(address)
    # Every hop is one of our proxies: the left-most is the nearest to the client.
    return str(_address(hops[0])) if hops else peer


SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    # Not "no-referrer": under it browsers send `Origin: null` on form POSTs (login,
    # logout), which `origin_allowed` refuses. Other sites still get no referrer.
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    # Another site's window cannot keep a handle on ours (window.opener, named targets).
    "Cross-Origin-Opener-Policy": "same-origin",
    # No page here uses these; a script injected despite the CSP gets none of them.
    "Permissions-Policy": (
        "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), "
        "microphone=(), payment=(), usb=()"
    ),
}


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        # Raised redirects and errors are responses too (an error page can be framed or
        # sniffed like any other); aiohttp sends the exception's own headers.
        _add_headers(exc.headers)
        raise
    if not response.prepared:  # a websocket's handshake went out already
        _add_headers(response.headers)
    return response


def _add_headers(headers: MutableMapping[str, str]) -> None:
    for name, value in SECURITY_HEADERS.items():
        headers.setdefault(name, value)


async def _response_headers(request: web.Request, response: web.StreamResponse) -> None:
    """On every response as it goes out (websocket handshakes and errors included)."""
    # No version banner: it only tells a scanner which advisories to try.
    response.headers.popall("Server", None)
    if not request.path.startswith("/static/"):
        # Pages, the API and the wall's snapshot hold a moderator's data or the live
        # state: never kept by a browser or a shared cache. Static files may be.
        response.headers.setdefault("Cache-Control", "no-store")


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def host_allowed(request: web.Request) -> bool:
    """Whether the Host header names this server, where it can know its names.

    Against DNS rebinding (a page on evil.example whose name turns to 127.0.0.1 and
    reads the local instance as same-origin): a connection that arrived on a loopback
    address must name a loopback host with the port it arrived on, or a host of
    BACKCHANNEL_ALLOWED_ORIGINS. A connection on another address (`serve --host
    0.0.0.0` behind a name, a proxy in another container) is not checked: the server
    cannot know the names it is reached by there.
    """
    given = request.headers.get("Host")
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if given is None or not isinstance(sockname, tuple):
        return True  # no Host (HTTP/1.0 tools), or a Unix socket: nothing to rebind
    try:
        local = ipaddress.ip_address(sockname[0].split("%")[0])
    except ValueError:
        return True
    mapped = getattr(local, "ipv4_mapped", None)
    if not (mapped or local).is_loopback:
        return True
    port = sockname[1]
    host = given.lower()
    names = {f"{name}:{port}" for name in LOOPBACK_HOSTS}
    if port == 80:
        names.update(LOOPBACK_HOSTS)
    names.update(urlsplit(origin).netloc for origin in request.app[SECURITY].allowed_origins)
    return host in names


@web.middleware
async def host_check(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not host_allowed(request):
        raise web.HTTPMisdirectedRequest(text="unknown host name for this server")
    return await handler(request)


def own_origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def origin_allowed(request: web.Request) -> bool:
    """Websockets and state-changing requests must come from our own pages."""
    origin = request.headers.get("Origin")
    if origin is None:
        # Browsers always send Origin on websocket handshakes and cross-site POSTs;
        # a request without one is not a browser acting for someone else.
        return True
    origin = origin.lower()
    return origin == own_origin(request).lower() or origin in request.app[SECURITY].allowed_origins


async def check_login(request: web.Request, username: str, password: str) -> LoginResult:
    """Check a password under the login throttle (argon2 runs in a worker thread)."""
    store = request.app[STORE]

    async def check() -> bool:
        stored = await asyncio.to_thread(store.password_hash, username)
        return await asyncio.to_thread(verify_password, stored, password)

    return await request.app[LOGIN_LIMITER].attempt(username, client_address(request), check)


async def login_session(request: web.Request, username: str) -> str:
    """Start a fresh session (a new id, so a planted one is useless; the browser's previous
    session ends); return its CSRF token."""
    previous = await get_session(request)
    if previous.identity is not None:
        await asyncio.to_thread(request.app[STORE].end_session, sessions.session_key(previous.identity))
    session = await new_session(request)
    session["user"] = username
    session["csrf"] = secrets.token_urlsafe(32)
    return str(session["csrf"])


async def logout_session(request: web.Request) -> None:
    """End every session of the logged-in user, on every instance, and close their sockets."""
    session = await get_session(request)
    login = sessions.login_of(session)
    session.invalidate()
    if login is not None:
        await sessions.end_user_sessions(request.app, login.user)


async def current_login(request: web.Request) -> sessions.Login | None:
    return sessions.login_of(await get_session(request))


async def current_user(request: web.Request) -> str | None:
    login = await current_login(request)
    return login.user if login else None


async def csrf_token(request: web.Request) -> str:
    session = await get_session(request)
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


async def require_moderator(request: web.Request, *, write: bool = False) -> str:
    """The logged-in moderator (their session live in the store), or 401; for writes also
    a same-origin request with the session's CSRF token in the X-CSRF-Token header, or 403."""
    user = await current_user(request)
    if user is None:
        raise web.HTTPUnauthorized(text='{"error": "login required"}', content_type="application/json")
    if write:
        session = await get_session(request)
        expected = session.get("csrf")
        given = request.headers.get("X-CSRF-Token", "")
        if not origin_allowed(request):
            raise web.HTTPForbidden(text='{"error": "cross-origin request"}', content_type="application/json")
        if not isinstance(expected, str) or not secrets.compare_digest(expected, given):
            raise web.HTTPForbidden(
                text='{"error": "missing or bad CSRF token"}', content_type="application/json"
            )
    return user
