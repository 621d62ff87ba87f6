"""Settings: the only module that reads the environment (prefix BACKCHANNEL_).

Each setting is declared once, with its help text; the README lists them all and a
test keeps the two in step.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Setting:
    name: str
    default: str
    help: str

    @property
    def env(self) -> str:
        return f"BACKCHANNEL_{self.name.upper()}"


SETTINGS: tuple[Setting, ...] = (
    Setting("db", "backchannel.db", "Database URL or SQLite file path (`postgresql://…` for PostgreSQL)."),
    Setting(
        "db_retry",
        "60",
        "Seconds a command keeps retrying a database that is down or restarting (connection refused or lost) before it gives up with exit status 3.",
    ),
    Setting("log_level", "INFO", "Logging level (DEBUG, INFO, WARNING, ERROR)."),
    Setting(
        "secret",
        "",
        'Key for the session cookies (32 url-safe base64 bytes, e.g. from `python -c "import cryptography.fernet as f; print(f.Fernet.generate_key().decode())"`); every instance of one deployment needs the same. Unset: a new key each start, so logins do not survive a restart.',
    ),
    Setting(
        "allowed_origins",
        "",
        "Extra origins (comma-separated, e.g. `https://wall.example.org`) allowed to open websockets and post moderation; the server's own origin is always allowed.",
    ),
    Setting(
        "cookie_secure",
        "auto",
        "`true` to mark cookies Secure and name them `__Host-…` (behind HTTPS), `false` for plain HTTP, `auto` to decide per request.",
    ),
    Setting(
        "trusted_proxies",
        "",
        "Addresses or networks (comma-separated, e.g. `10.0.0.2,172.16.0.0/12`) of the reverse proxies in front of the app: only from these is `X-Forwarded-For` (else `Forwarded`) read for the client's address, which the login throttle counts by. Unset: the peer's address.",
    ),
    Setting(
        "max_sockets",
        "0",
        "Open websockets (walls and dashboards) one instance accepts in all; one more is closed at once with code 1013 (try again later). 0: half the process's file-descriptor limit (`ulimit -n`), leaving the rest to HTTP, the database and Redis.",
    ),
    Setting(
        "max_sockets_per_address",
        "100",
        "Public wall websockets one client address may hold (moderators' dashboards count only against the total); one more is closed at once with code 1008. 0: no cap. Behind a proxy every client shares the proxy's address unless its forwarded address is trusted.",
    ),
    Setting(
        "redis",
        "",
        "Redis URL (`redis://…`) to fan out live items across several app instances, and from `backchannel replay` and `backchannel collect` to them; unset: in-process hub.",
    ),
    Setting(
        "redis_prefix",
        "backchannel:",
        "Prefix of the Redis keys one deployment uses (its fan-out stream is `{prefix}events`); deployments that share a Redis server need different ones.",
    ),
)


def setting(name: str, environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    for s in SETTINGS:
        if s.name == name:
            return env.get(s.env, s.default)
    raise KeyError(name)
