"""Limits on what anonymous clients can hold: websockets per address and in all, and
the file descriptors behind them.

Every open connection costs a file descriptor. Past the process's limit
(RLIMIT_NOFILE) `accept()` fails with EMFILE, and asyncio's accept loop (CPython 3.11
to 3.13) does not stop at the first failure: it logs a traceback and schedules a
retry for each of its `backlog` attempts, every time the listening socket is ready,
and the retries multiply (tens of thousands of tracebacks in seconds). So:

- websockets are capped in all (`max_sockets`, by default half the descriptor limit,
  leaving the other half to HTTP requests, the database and Redis) and the public's
  per client address (`max_sockets_per_address`); a socket over a cap is accepted and closed at
  once with a close code that says which (`SocketCounts.admit`), so it gives its
  descriptor back;
- should descriptors run out anyway (idle connections that never send a request),
  the server's listening sockets (`listening_sockets`) report one EMFILE per pause:
  asyncio logs it once, stops accepting for a second (its own backpressure), and
  tries again, instead of logging a traceback per attempt.
"""

from __future__ import annotations

import errno
import resource
import socket
import time
from collections import Counter
from dataclasses import dataclass

from aiohttp import web

# RFC 6455's registered codes: 1013 "Try Again Later" (the server is at its limit),
# 1008 "Policy Violation" (this address holds its share already). Clients reconnect
# with backoff after either.
CLOSE_SERVER_FULL = 1013
CLOSE_ADDRESS_FULL = 1008

# The errors asyncio answers by pausing its accept loop for a second.
_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
# asyncio's pause after such an error (asyncio.constants.ACCEPT_RETRY_DELAY).
_ACCEPT_PAUSE = 1.0


def default_max_sockets() -> int:
    """Half the process's file-descriptor limit (at least 16)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 100_000
    return max(16, soft // 2)


@dataclass(frozen=True, slots=True)
class Refusal:
    code: int
    reason: str


class SocketCounts:
    """Open websockets, in all and per client address, against their caps."""

    def __init__(self, max_sockets: int, per_address: int) -> None:
        self.max_sockets = max_sockets if max_sockets > 0 else default_max_sockets()
        self.per_address = per_address  # 0: no per-address cap
        self.total = 0
        self._by_address: Counter[str] = Counter()

    def admit(self, address: str, *, anonymous: bool = True) -> Refusal | None:
        """Count a new socket from `address`, or say why it is refused (then it is not
        counted). A moderator's (not `anonymous`) counts against the total only: the
        per-address cap is for the public, and must not lock the moderators out of
        their own dashboard from a venue's shared address."""
        if self.total >= self.max_sockets:
            return Refusal(CLOSE_SERVER_FULL, "server at its connection limit; try again later")
        if anonymous and self.per_address and self._by_address[address] >= self.per_address:
            return Refusal(CLOSE_ADDRESS_FULL, "too many connections from this address")
        self.total += 1
        self._by_address[address] += 1
        return None

    def release(self, address: str) -> None:
        self.total -= 1
        self._by_address[address] -= 1
        if self._by_address[address] <= 0:
            del self._by_address[address]

    def held_by(self, address: str) -> int:
        return self._by_address[address]


SOCKET_COUNTS = web.AppKey("socket_counts", SocketCounts)


def setup(app: web.Application, *, max_sockets: int, per_address: int) -> None:
    app[SOCKET_COUNTS] = SocketCounts(max_sockets, per_address)


class _ListeningSocket(socket.socket):
    """A listening socket whose `accept()` raises EMFILE (and its kin) once per pause.

    After the first failure asyncio logs, removes the socket from its selector and
    schedules a retry in a second, but goes on calling `accept()` up to `backlog`
    times in the same call; each further failure would log and schedule once more.
    Reporting "nothing to accept" (BlockingIOError) for the rest of the pause ends
    that loop after the first.
    """

    _paused_until = 0.0

    def accept(self) -> tuple[socket.socket, object]:
        if time.monotonic() < self._paused_until:
            raise BlockingIOError(errno.EAGAIN, "accepting paused: out of file descriptors")
        try:
            return super().accept()
        except OSError as exc:
            if exc.errno in _OUT_OF_RESOURCES:
                self._paused_until = time.monotonic() + _ACCEPT_PAUSE
            raise


def listening_sockets(host: str, port: int, backlog: int = 128) -> list[socket.socket]:
    """Bound, listening sockets for every address `host` resolves to (as asyncio's
    `create_server` would make them), whose accept loop pauses quietly on EMFILE."""
    sockets: list[socket.socket] = []
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    try:
        for family, type_, proto, _, address in dict.fromkeys(infos):
            listener = _ListeningSocket(family, type_, proto)
            sockets.append(listener)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                # One socket per family, as asyncio does: the IPv6 one takes IPv6 only.
                listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            listener.bind(address)
            listener.listen(backlog)
            listener.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets
