"""How long a source waits after a failure, and what upstream rate-limit headers ask.

Pure: the rules of DESIGN.md's "Upstream manners" (after X's published guidance for
its streams, which suits polling as well), as functions of the failure, the attempt
number and the response headers. The runner applies the delay; nothing here sleeps.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


class FailureKind(enum.StrEnum):
    NETWORK = "network"  # connection refused or reset, timeout, truncated body
    HTTP = "http"  # 5xx and unexpected statuses
    RATE_LIMIT = "rate-limit"  # 429
    AUTH = "auth"  # 401/403: retrying will not help; a person must act


# Network errors are usually brief: retry soon, linearly, 250 ms more each time, never
# waiting more than 16 s (X's guidance for TCP/IP level problems).
NETWORK_STEP, NETWORK_CAP = 0.25, 16.0
# An HTTP error means the server is struggling: back off exponentially from 5 s, doubling
# to at most 320 s, so many clients do not hammer it back to life at once.
HTTP_FIRST, HTTP_CAP = 5.0, 320.0
# A 429 without Retry-After or a reset time: start at a minute and double (X's guidance).
RATE_LIMIT_FIRST, RATE_LIMIT_CAP = 60.0, 960.0
# Jitter spreads the retries of many sources (and many installations) over time.
JITTER = 0.2


def classify(status: int | None) -> FailureKind:
    if status is None:
        return FailureKind.NETWORK
    if status == 429:
        return FailureKind.RATE_LIMIT
    if status in (401, 403):
        return FailureKind.AUTH
    return FailureKind.HTTP


def retry_delay(
    kind: FailureKind,
    attempt: int,
    *,
    upstream_wait: float | None = None,
    rng: random.Random | None = None,
) -> float | None:
    """Seconds before the next try after the `attempt`-th consecutive failure (1-based),
    or None to stop trying. `upstream_wait` is what Retry-After or a rate-limit reset
    asked for; it is honoured as a minimum."""
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    if kind is FailureKind.AUTH:
        return None
    if kind is FailureKind.NETWORK:
        base = min(NETWORK_STEP * attempt, NETWORK_CAP)
    elif kind is FailureKind.HTTP:
        base = min(HTTP_FIRST * 2 ** (attempt - 1), HTTP_CAP)
    else:
        base = min(RATE_LIMIT_FIRST * 2 ** (attempt - 1), RATE_LIMIT_CAP)
        if upstream_wait is not None:
            # The server said when: that is the wait, not a guess (plus a second for clock skew).
            base = max(upstream_wait + 1.0, 1.0)
            return base * (1 + (rng or random).uniform(0, JITTER / 4))
    if upstream_wait is not None:
        base = max(base, upstream_wait)
    return base * (1 + (rng or random).uniform(0, JITTER))


def _header(headers: Mapping[str, str], *names: str) -> str | None:
    lowered = {k.lower(): v for k, v in headers.items()}
    for name in names:
        if (value := lowered.get(name.lower())) is not None:
            return value.strip()
    return None


def seconds_until(value: str, now: datetime) -> float | None:
    """A reset time as sent by the networks: Unix seconds (X, Bluesky), an ISO 8601
    time (Mastodon), or a number of seconds from now (small numbers)."""
    try:
        number = float(value)
    except ValueError:
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - now).total_seconds())
    if number > 1e9:
        return max(0.0, number - now.timestamp())
    return max(0.0, number)


def retry_after(headers: Mapping[str, str], now: datetime) -> float | None:
    """Retry-After as seconds: a number of seconds or an HTTP date (RFC 9110)."""
    value = _header(headers, "Retry-After")
    if value is None:
        return None
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, (parsedate_to_datetime(value) - now).total_seconds())
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class RateLimit:
    limit: int | None
    remaining: int | None
    reset_in: float | None


def rate_limit(headers: Mapping[str, str], now: datetime) -> RateLimit:
    """The rate-limit headers of Mastodon (X-RateLimit-*), X (x-rate-limit-*) and
    Bluesky (RateLimit-*), whichever are present."""

    def number(*names: str) -> int | None:
        value = _header(headers, *names)
        try:
            return int(float(value)) if value is not None else None
        except ValueError:
            return None

    reset = _header(headers, "X-RateLimit-Reset", "x-rate-limit-reset", "RateLimit-Reset")
    return RateLimit(
        limit=number("X-RateLimit-Limit", "x-rate-limit-limit", "RateLimit-Limit"),
        remaining=number("X-RateLimit-Remaining", "x-rate-limit-remaining", "RateLimit-Remaining"),
        reset_in=seconds_until(reset, now) if reset is not None else None,
    )


def wait_before_next_call(headers: Mapping[str, str], now: datetime) -> float | None:
    """Seconds to wait because the window is spent (remaining 0), else None: a polite
    client sleeps until the reset instead of collecting a 429."""
    limits = rate_limit(headers, now)
    if limits.remaining == 0 and limits.reset_in is not None:
        return limits.reset_in
    return None
