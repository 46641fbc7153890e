"""Errors a function raises to tell the runtime what to do with a batch.

FerrymanError (ferryman.errors)
 └── DeliveryError        anything else raised by a function is retryable too
      ├── Permanent       dead-letter now: retrying can never succeed
      └── Throttled       retry after the delay the backend asked for
"""

from __future__ import annotations

from ferryman.errors import FerrymanError

__all__ = ["DeliveryError", "Permanent", "Throttled"]


class DeliveryError(FerrymanError):
    """Raised when a batch was not delivered and may succeed if tried again."""


class Permanent(DeliveryError):
    """Raised when a batch can never be delivered (bad data, a 4xx that will not change).

    The runtime dead-letters the batch with ``reason`` in the headers and commits.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Throttled(DeliveryError):
    """Raised when the backend pushed back (429, Retry-After); retry after ``delay`` s."""

    def __init__(self, reason: str, delay: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay
