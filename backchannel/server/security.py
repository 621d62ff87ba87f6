"""Sessions, passwords, CSRF, origin and Host checks, login throttling and security
headers.

Everything a request passes through before a view sees it. Views never read cookies
or headers for authorisation themselves: they call `require_moderator`.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp_session import Session, get_session, new_session
from aiohttp_session import setup as setup_session
from aiohttp_session.cookie_storage import EncryptedCookieStorage
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet
from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

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


@dataclass(frozen=True, slots=True)
class SecuritySettings:
    secret: str = ""
    allowed_origins: tuple[str, ...] = ()
    cookie_secure: str = "auto"  # "true" | "false" | "auto"
    # Login attempts: per account and per client address, per minute.
    login_per_account: int = 5
    login_per_ip: int = 20
    # Open websockets in all (0: half the file-descriptor limit) and per client address
    # (0: no cap); see `limits.py`.
    max_sockets: int = 0
    max_sockets_per_address: int = 100

    def __post_init__(self) -> None:
        # Compared as browsers send an Origin: scheme://host[:port], lower case, no slash.
        origins = tuple(o.strip().rstrip("/").lower() for o in self.allowed_origins if o.strip())
        object.__setattr__(self, "allowed_origins", origins)


def session_key(secret: str) -> bytes:
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


class SessionCookies(EncryptedCookieStorage):
    """The encrypted session cookie; with `cookie_secure=auto` it is Secure exactly when
    the request came over HTTPS (a cookie marked Secure would not come back over plain
    HTTP, and one left unmarked on HTTPS could leak over a later plain request)."""

    def __init__(self, key: bytes, *, auto_secure: bool, **params: Any) -> None:
        super().__init__(key, **params)
        self.auto_secure = auto_secure

    async def save_session(
        self, request: web.Request, response: web.StreamResponse, session: Session
    ) -> None:
        await super().save_session(request, response, session)
        morsel = response.cookies.get(self.cookie_name)
        if self.auto_secure and request.secure and morsel is not None:
            morsel["secure"] = True


def setup_security(app: web.Application, settings: SecuritySettings) -> None:
    if settings.cookie_secure not in ("true", "false", "auto"):
        raise ValueError("BACKCHANNEL_COOKIE_SECURE must be true, false or auto")
    secure = settings.cookie_secure == "true"
    storage = SessionCookies(
        session_key(settings.secret),
        auto_secure=settings.cookie_secure == "auto",
        cookie_name="__Host-backchannel" if secure else "backchannel_session",
        httponly=True,
        secure=secure,
        samesite="Strict",
        path="/",
        max_age=12 * 3600,
    )
    setup_session(app, storage)
    app.middlewares.append(security_headers)
    app.middlewares.append(host_check)
    app.on_response_prepare.append(_response_headers)
    app[LOGIN_LIMITER] = LoginLimiter(settings.login_per_account, settings.login_per_ip)
    app[SECURITY] = settings


class LoginLimiter:
    """Moving-window throttle on login attempts, per account and per address."""

    def __init__(self, per_account: int, per_ip: int) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._account = RateLimitItemPerMinute(per_account)
        self._ip = RateLimitItemPerMinute(per_ip)

    def hit(self, username: str, address: str) -> int | None:
        """Count an attempt; return seconds to wait when over the limit, else None."""
        for item, key in ((self._account, f"user:{username.lower()}"), (self._ip, f"ip:{address}")):
            if not self._limiter.hit(item, key):
                reset, _ = self._limiter.get_window_stats(item, key)
                return max(1, int(reset - time.time()) + 1)
        return None


LOGIN_LIMITER = web.AppKey("login_limiter", LoginLimiter)
SECURITY = web.AppKey("security_settings", SecuritySettings)


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


async def login_session(request: web.Request, username: str) -> str:
    """Start a fresh session (a new cookie, so a planted one is useless); return its CSRF token."""
    session = await new_session(request)
    session["user"] = username
    session["csrf"] = secrets.token_urlsafe(32)
    return str(session["csrf"])


async def current_user(request: web.Request) -> str | None:
    session = await get_session(request)
    user = session.get("user")
    return user if isinstance(user, str) else None


async def csrf_token(request: web.Request) -> str:
    session = await get_session(request)
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


async def require_moderator(request: web.Request, *, write: bool = False) -> str:
    """The logged-in moderator, or 401; for writes also a same-origin request with the
    session's CSRF token in the X-CSRF-Token header, or 403."""
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
