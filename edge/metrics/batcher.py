"""Group encoded series by bucket into remote-write messages and queue them on disk.

One bucket always maps to one Kafka partition, so every sample of a series travels
through one partition, in order. A message is closed when it holds
``max_samples`` samples or when :meth:`flush` is called (every flush interval).
"""

from __future__ import annotations

from ferryman.telemetry import Counter
from ferryman.wire.remote_write import snappy_compress

from ..diskqueue import DiskQueue

__all__ = ["Batcher"]


class Batcher:
    def __init__(
        self,
        queue: DiskQueue,
        *,
        buckets: int,
        max_samples: int,
        messages: Counter,
        samples: Counter,
    ) -> None:
        self.queue = queue
        self.max_samples = max_samples
        self._parts: list[list[bytes]] = [[] for _ in range(buckets)]
        self._messages = messages
        self._samples = samples

    def add(self, bucket: int, encoded_series: bytes) -> None:
        parts = self._parts[bucket]
        parts.append(encoded_series)
        if len(parts) >= self.max_samples:
            self._close(bucket)

    def flush(self) -> None:
        for bucket, parts in enumerate(self._parts):
            if parts:
                self._close(bucket)

    def _close(self, bucket: int) -> None:
        parts = self._parts[bucket]
        self._parts[bucket] = []
        self.queue.append(bucket, len(parts), snappy_compress(b"".join(parts)))
        self._messages.inc()
        self._samples.inc(len(parts))
