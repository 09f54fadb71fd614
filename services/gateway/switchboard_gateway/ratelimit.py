"""Token bucket and error window: pure, driven by the caller's clock."""

from __future__ import annotations


class TokenBucket:
    """`rate` tokens per second, at most `burst` banked. Lazily refilled, so
    an idle connection costs no timer."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = now

    def take(self, now: float) -> float:
        """Take one token. Returns 0 when granted, else the seconds to wait."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class ErrorWindow:
    """Counts errors in a sliding window; `add` returns True past the limit."""

    __slots__ = ("limit", "window", "stamps")

    def __init__(self, limit: int, window: float = 10.0) -> None:
        self.limit = limit
        self.window = window
        self.stamps: list[float] = []

    def add(self, now: float) -> bool:
        cutoff = now - self.window
        stamps = self.stamps
        if stamps and stamps[0] <= cutoff:
            self.stamps = stamps = [t for t in stamps if t > cutoff]
        stamps.append(now)
        return len(stamps) > self.limit
