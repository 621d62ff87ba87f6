"""Out of file descriptors: `backchannel serve` in its own process under a low
RLIMIT_NOFILE, flooded with idle connections that each hold a descriptor.

Before: asyncio's accept loop logged a traceback per attempt and per retry, and the
retries multiplied (1,592 tracebacks in 3 s at a limit of 128; 147,967 in the fault
test). Now: one log entry per one-second pause, and the server serves again once the
idle connections go.
"""

from __future__ import annotations

import asyncio
import os
import resource
import socket
import sys
from pathlib import Path

import aiohttp
from support import free_port

LIMIT = 128
IDLE = 300  # connections that never send a request: more than the limit
FLOOD = 4.0  # seconds the server spends out of descriptors


def _low_descriptor_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, hard))


async def _serving(http: aiohttp.ClientSession, port: int, timeout: float) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        try:
            async with http.get(f"http://127.0.0.1:{port}/login") as resp:
                if resp.status == 200:
                    return True
        except (aiohttp.ClientError, TimeoutError):
            pass
        await asyncio.sleep(0.1)
    return False


async def test_no_log_storm_when_descriptors_run_out(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKCHANNEL_")}
    env["BACKCHANNEL_DB"] = str(tmp_path / "backchannel.db")
    with log.open("wb") as out:
        server = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "backchannel", "serve", "--port", str(port),
            env=env, stdout=out, stderr=out, preexec_fn=_low_descriptor_limit,
        )  # fmt: skip
    idle: list[socket.socket] = []
    try:
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            assert await _serving(http, port, 30), log.read_text()
            for _ in range(IDLE):
                sock = socket.socket()
                sock.setblocking(False)
                sock.connect_ex(("127.0.0.1", port))  # completes in the listen backlog
                idle.append(sock)
            await asyncio.sleep(FLOOD)  # the time under test: nothing to await
            assert server.returncode is None, log.read_text()
            for sock in idle:
                sock.close()
            idle.clear()
            # Accepting resumes after a pause: the server serves again.
            assert await _serving(http, port, 15), log.read_text()
    finally:
        for sock in idle:
            sock.close()
        if server.returncode is None:
            server.terminate()
        await asyncio.wait_for(server.wait(), 15)
    text = log.read_text()
    failures = text.count("out of system resource")
    assert failures >= 1, text[-2000:]  # the flood did exhaust the descriptors
    # One per pause of a second (the flood, and the drain after it), with some slack.
    assert failures <= FLOOD + 6, failures
    assert len(text.splitlines()) < 200, text[-2000:]
