"""Per-tenant rate limits: a token bucket per tenant and signal."""

from __future__ import annotations

import threading
import time

__all__ = ["TokenBucket"]


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` banked; thread-safe.

    :meth:`take` takes ``n`` tokens and returns 0, or takes none and returns the seconds
    until ``n`` would be there (a request larger than the burst is let through when the
    bucket is full, so that no request can be refused forever)."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._at = time.monotonic()
        self._lock = threading.Lock()

    def take(self, n: float) -> float:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            if n <= self._tokens or self._tokens >= self.burst:
                self._tokens -= n
                return 0.0
            return (min(n, self.burst) - self._tokens) / self.rate

    def give(self, n: float) -> None:
        """Put back ``n`` tokens taken for a request that was then not written (Kafka
        away): its retry must not find the bucket spent on data that never went."""
        with self._lock:
            self._tokens = min(self.burst, self._tokens + n)
