"""Throwaway PostgreSQL clusters and Redis servers that a fault test may kill.

A fault test never touches the machine's shared services: it starts its own on a free
port, in a directory of its own, and stops them when it ends. PostgreSQL's `initdb`
refuses to run as root, so when the tests run as root the cluster runs as the
`postgres` user (`runuser`). Every wait here is bounded in time.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from support import free_port

# How long a service may take to start or stop before the test fails.
START_TIMEOUT = 30.0


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    raise FileNotFoundError(f"{name} (PostgreSQL's server binaries) not found")


def _wait_until(ready: object, what: str, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not come up within {timeout:.0f} s")


def _accepts(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Postgres:
    """A PostgreSQL cluster of the test's own: `start`, `stop`, `kill` (-9 to the
    postmaster), `restart(down_for)`, and `new_database()` for a fresh database URL."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="bc-fault-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run(_pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.dir}'\nfsync = off\nmax_connections = 100\n"
            )

    @property
    def url(self) -> str:
        """The maintenance database (`postgres`)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = ["runuser", "-u", "postgres", "--", *args] if self.as_root else list(args)
        done = subprocess.run(command, capture_output=True, text=True, timeout=START_TIMEOUT)
        if check and done.returncode != 0:
            log = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise OSError(f"{' '.join(args)} failed: {done.stdout}{done.stderr}\n{log}")
        return done

    def start(self) -> None:
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "start")
        _wait_until(lambda: _accepts(self.port), "PostgreSQL")

    def stop(self) -> None:
        """A fast shutdown (clients are disconnected, nothing is lost)."""
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)

    def pid(self) -> int | None:
        pidfile = self.data / "postmaster.pid"
        try:
            return int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def kill(self) -> None:
        """kill -9 the postmaster and its children: a crash, recovered at the next start."""
        pid = self.pid()
        if pid is None:
            return
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
        for victim in [pid, *map(int, children)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
        _wait_until(lambda: not _accepts(self.port), "PostgreSQL's death", timeout=10)
        # A killed postmaster may linger as a zombie where nothing reaps orphans (PID 1 in a
        # container), and its lock files would make the next start think it still runs.
        (self.data / "postmaster.pid").unlink(missing_ok=True)
        for lock in self.dir.glob(".s.PGSQL.*.lock"):
            lock.unlink(missing_ok=True)

    def restart(self, down_for: float = 0.0, *, crash: bool = False) -> None:
        self.kill() if crash else self.stop()
        time.sleep(down_for)
        self.start()

    def running(self) -> bool:
        return _accepts(self.port)

    def new_database(self) -> str:
        import psycopg

        name = f"bc_fault_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def close(self) -> None:
        if self.running():
            self.stop()
        if self.running():
            self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class Redis:
    """A redis-server of the test's own, keeping nothing on disk: `start`, `stop`
    (SIGTERM), `kill` (-9), `restart(down_for)`. It keeps its port across restarts."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="bc-fault-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server not found")
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_until(lambda: _accepts(self.port), "Redis")

    def _end(self, sig: signal.Signals) -> None:
        if self.process is None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        self._end(signal.SIGKILL)

    def restart(self, down_for: float = 0.0) -> None:
        self.kill()
        time.sleep(down_for)
        self.start()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
