"""How long a batch waits between two in-process delivery attempts.

Exponential backoff with full jitter: before retry ``n`` (1 for the first) the cap is
``initial_s * 2 ** (n - 1)``, at most ``max_s``, and the delay is drawn uniformly
between 0 and the cap, so workers refused together do not come back together. A
delay the backend asked for (``Throttled.delay``, ``Delivered.retry_delay``) is a
floor: the wait is never shorter, even when it is longer than ``max_s``.
"""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["Backoff"]


class Backoff:
    """The delays of one batch's retries; :meth:`next_delay` once per failed attempt.

    ``rand`` returns a number in [0, 1) (default :func:`random.random`); tests pin it.
    """

    def __init__(
        self, initial_s: float, max_s: float, *, rand: Callable[[], float] = random.random
    ) -> None:
        if not 0 < initial_s <= max_s:
            raise ValueError(f"need 0 < initial_s <= max_s, got {initial_s} and {max_s}")
        self.initial_s = initial_s
        self.max_s = max_s
        self.rand = rand
        self.retries = 0

    def cap(self) -> float:
        """The longest delay the next retry may draw (the backend's floor aside)."""
        # The exponent stops growing long before a float overflows.
        return min(self.max_s, self.initial_s * 2.0 ** min(self.retries, 64))

    def next_delay(self, floor: float | None = None) -> float:
        """Seconds to wait before the next attempt, never less than ``floor``."""
        drawn = self.cap() * min(1.0, max(0.0, self.rand()))
        self.retries += 1
        return max(drawn, floor) if floor is not None else drawn
