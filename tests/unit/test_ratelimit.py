"""TokenBucket and ErrorWindow, driven by an explicit clock."""

from __future__ import annotations

import pytest

from switchboard_gateway.ratelimit import ErrorWindow, TokenBucket


def test_burst_then_refused_with_retry_after() -> None:
    bucket = TokenBucket(rate=10, burst=20, now=100.0)
    assert [bucket.take(100.0) for _ in range(20)] == [0.0] * 20
    wait = bucket.take(100.0)
    assert wait == pytest.approx(0.1)  # one token at 10/s
    assert bucket.take(100.0) == pytest.approx(0.1)  # a refusal costs nothing


def test_refill_is_proportional_to_time() -> None:
    bucket = TokenBucket(rate=10, burst=20, now=0.0)
    for _ in range(20):
        bucket.take(0.0)
    assert bucket.take(0.05) == pytest.approx(0.05)  # half a token banked
    assert bucket.take(0.1) == 0.0
    assert bucket.take(0.1) == pytest.approx(0.1)
    assert [bucket.take(0.5) for _ in range(4)] == [0.0] * 4
    assert bucket.take(0.5) > 0


def test_refill_is_capped_at_burst() -> None:
    bucket = TokenBucket(rate=10, burst=3, now=0.0)
    for _ in range(3):
        bucket.take(0.0)
    granted = [bucket.take(3600.0) for _ in range(4)]
    assert granted[:3] == [0.0, 0.0, 0.0] and granted[3] == pytest.approx(0.1)


def test_slow_rate_retry_after_in_seconds() -> None:
    bucket = TokenBucket(rate=0.5, burst=1, now=0.0)
    assert bucket.take(0.0) == 0.0
    assert bucket.take(0.0) == pytest.approx(2.0)
    assert bucket.take(1.0) == pytest.approx(1.0)
    assert bucket.take(2.0) == 0.0


def test_steady_rate_is_sustained() -> None:
    bucket = TokenBucket(rate=4, burst=1, now=0.0)  # steps exact in binary floating point
    assert all(bucket.take(i * 0.25) == 0.0 for i in range(100))
    assert bucket.take(99 * 0.25) == pytest.approx(0.25)


def test_error_window_counts_past_the_limit() -> None:
    window = ErrorWindow(limit=3, window=10.0)
    assert [window.add(t) for t in (0.0, 1.0, 2.0)] == [False, False, False]
    assert window.add(3.0) is True


def test_error_window_slides() -> None:
    window = ErrorWindow(limit=3, window=10.0)
    for t in (0.0, 1.0, 2.0):
        window.add(t)
    assert window.add(10.0) is False  # t=0 fell out exactly at the edge
    assert window.add(10.5) is True  # 1, 2, 10, 10.5
    assert window.add(30.0) is False  # all old ones gone
    assert len(window.stamps) == 1


def test_error_window_steady_trickle_never_trips() -> None:
    window = ErrorWindow(limit=5, window=10.0)
    assert not any(window.add(t * 2.5) for t in range(200))  # 4 per window
