from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from backchannel.core.backoff import (
    FailureKind,
    classify,
    rate_limit,
    retry_after,
    retry_delay,
    wait_before_next_call,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def no_jitter() -> random.Random:
    class Fixed(random.Random):
        def uniform(self, a: float, b: float) -> float:
            return a

    return Fixed()


def test_classify() -> None:
    assert classify(None) is FailureKind.NETWORK
    assert classify(429) is FailureKind.RATE_LIMIT
    assert classify(401) is classify(403) is FailureKind.AUTH
    assert classify(500) is classify(404) is FailureKind.HTTP


def test_network_errors_back_off_linearly_to_16_s() -> None:
    delays = [retry_delay(FailureKind.NETWORK, n, rng=no_jitter()) for n in (1, 2, 3, 64, 100)]
    assert delays == [0.25, 0.5, 0.75, 16.0, 16.0]


def test_http_errors_back_off_exponentially_from_5_to_320_s() -> None:
    delays = [retry_delay(FailureKind.HTTP, n, rng=no_jitter()) for n in (1, 2, 3, 7, 10)]
    assert delays == [5, 10, 20, 320, 320]


def test_429_honours_retry_after_else_starts_at_a_minute() -> None:
    assert retry_delay(FailureKind.RATE_LIMIT, 1, rng=no_jitter()) == 60
    assert retry_delay(FailureKind.RATE_LIMIT, 2, rng=no_jitter()) == 120
    assert retry_delay(FailureKind.RATE_LIMIT, 1, upstream_wait=7, rng=no_jitter()) == 8


def test_auth_failures_stop() -> None:
    assert retry_delay(FailureKind.AUTH, 1) is None


def test_jitter_only_lengthens_and_is_bounded() -> None:
    rng = random.Random(1)
    for attempt in range(1, 8):
        d = retry_delay(FailureKind.HTTP, attempt, rng=rng)
        base = min(5 * 2 ** (attempt - 1), 320)
        assert d is not None and base <= d <= base * 1.2
    with pytest.raises(ValueError):
        retry_delay(FailureKind.HTTP, 0)


def test_rate_limit_headers_of_each_network() -> None:
    mastodon = {
        "X-RateLimit-Limit": "300",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "2026-11-23T12:05:00.000Z",
    }
    assert rate_limit(mastodon, NOW).reset_in == 300
    assert wait_before_next_call(mastodon, NOW) == 300
    x = {
        "x-rate-limit-limit": "450",
        "x-rate-limit-remaining": "12",
        "x-rate-limit-reset": str(int(NOW.timestamp()) + 90),
    }
    assert rate_limit(x, NOW) == rate_limit(x, NOW).__class__(450, 12, 90)
    assert wait_before_next_call(x, NOW) is None
    bluesky = {
        "RateLimit-Limit": "3000",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": str(int(NOW.timestamp()) + 30),
    }
    assert wait_before_next_call(bluesky, NOW) == 30


def test_retry_after_seconds_or_http_date() -> None:
    assert retry_after({"Retry-After": "120"}, NOW) == 120
    assert retry_after({"retry-after": "Mon, 23 Nov 2026 12:01:00 GMT"}, NOW) == 60
    assert retry_after({"Retry-After": "soon"}, NOW) is None
    assert retry_after({}, NOW) is None
