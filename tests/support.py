"""Helpers shared by the hub, server, fan-out and process tests: a message builder, a feed
reader and a free port."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import orjson
import pytest

from backchannel.core import wire
from backchannel.core.models import Message, Network

T0 = datetime(2010, 6, 22, 12, 0, tzinfo=UTC)
# How long a test waits for a frame before it fails.
FRAME_TIMEOUT = 5.0

Frame = dict[str, Any]


def msg(i: int, text: str | None = None, author: str | None = None) -> Message:
    return Message(
        network=Network.X,
        network_id=str(i),
        uri=f"https://x.com/i/status/{i}",
        author_handle=author or f"user{i}",
        author_name=f"User {i}",
        text=text if text is not None else f"message {i} #slz",
        created_at=T0 + timedelta(seconds=i),
        hashtags=("slz",),
    )


class Feed:
    """One websocket's frames as JSON objects, from either client library."""

    def __init__(self, receive: Callable[[], Any], timeout: float = FRAME_TIMEOUT) -> None:
        self._receive = receive
        self._timeout = timeout
        self.frames: list[Frame] = []

    async def frame(self) -> Frame:
        data = await asyncio.wait_for(self._receive(), self._timeout)
        wire.parse_frame(data)  # well-formed by the wire module's own parser
        frame = orjson.loads(data)
        self.frames.append(frame)
        return dict(frame)

    async def items_until(self, done: Callable[[Frame], bool]) -> list[Frame]:
        """Items (in arrival order) up to and including the one `done` accepts."""
        items: list[Frame] = []
        while True:
            frame = await self.frame()
            assert frame["type"] == "items", frame
            for item in frame["items"]:
                items.append(item)
                if done(item):
                    return items

    async def until_type(self, kind: str) -> list[Frame]:
        """Every frame before the next one of type `kind` (which is last in the list)."""
        seen = [await self.frame()]
        while seen[-1]["type"] != kind:
            seen.append(await self.frame())
        return seen


async def aiohttp_receive(ws: aiohttp.ClientWebSocketResponse) -> str:
    message = await ws.receive()
    assert message.type is aiohttp.WSMsgType.TEXT, message
    return str(message.data)


def free_port() -> int:
    """A TCP port nothing listens on now, for a server started in another process."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def stalled_websocket(port: int, path: str, *, rcvbuf: int = 4096) -> socket.socket:
    """A websocket client that does the handshake and then never reads again.

    Its receive buffer is tiny, so the stall reaches the server after a few KiB rather
    than after the megabytes of loopback autotuning. It answers no ping. The caller
    closes the socket (reading it shows how the server ended the connection)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 1), FRAME_TIMEOUT)
        if not chunk:
            raise ConnectionError(f"the server closed the handshake: {response!r}")
        response += chunk
    if not response.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(f"no websocket: {response!r}")
    return sock


# Linux TCP_INFO's first byte is the socket's state; 1 is ESTABLISHED.
TCP_ESTABLISHED = 1


def established(sock: socket.socket) -> bool:
    """Whether the peer still holds the connection, seen without reading the socket."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == TCP_ESTABLISHED


async def how_it_ended(sock: socket.socket, timeout: float) -> str:
    """Read a stalled socket to its end: "reset" (RST) or "closed" (FIN); fail after `timeout`."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        while True:
            try:
                if not await loop.sock_recv(sock, 1 << 16):
                    return "closed"
            except ConnectionResetError:
                return "reset"


IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(what: str, why: object) -> None:
    """Skip on a laptop without the service; fail in CI, where it must be there."""
    message = f"{what} is not available ({why})"
    if IN_CI:
        pytest.fail(message + "; CI must provide it")
    pytest.skip(message)
