"""Group encoded series by bucket into remote-write messages and queue them on disk.

One bucket always maps to one Kafka partition, so every sample of a series travels
through one partition, in order. A message is closed when it holds
``max_samples`` samples or when :meth:`flush` is called (every flush interval).

When the native module has ``SampleBuffers`` (default), the open messages are held
natively, so that a native scrape pass (:class:`ferryman_native.ScrapeCache`) writes
its samples straight into them; the messages (which samples, in which order, cut
where) are the ones the Python buffers make, and are compressed here all the same.
"""

from __future__ import annotations

from ferryman.telemetry import Counter
from ferryman.wire.remote_write import snappy_compress

from ..diskqueue import DiskQueue

try:
    from ferryman_native import SampleBuffers
except ImportError:  # an older build of the native module, or none: Python buffers
    SampleBuffers = None  # type: ignore[assignment,misc]

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
        native: bool = True,
    ) -> None:
        """``native=False`` keeps the open messages in Python even when the native
        module could hold them (the oracle for tests)."""
        self.queue = queue
        self.max_samples = max_samples
        self._parts: list[list[bytes]] = [[] for _ in range(buckets)]
        self._messages = messages
        self._samples = samples
        self.buffers: SampleBuffers | None = (
            SampleBuffers(buckets, max_samples) if native and SampleBuffers is not None else None
        )

    def add(self, bucket: int, encoded_series: bytes) -> None:
        if self.buffers is not None:
            if self.buffers.add(bucket, encoded_series):
                self.drain()
            return
        parts = self._parts[bucket]
        parts.append(encoded_series)
        if len(parts) >= self.max_samples:
            self._close(bucket)

    def flush(self) -> None:
        if self.buffers is not None:
            self.buffers.flush()
            self.drain()
            return
        for bucket, parts in enumerate(self._parts):
            if parts:
                self._close(bucket)

    def drain(self) -> None:
        """Queue the messages the native buffers closed (after a native scrape pass)."""
        if self.buffers is not None:
            for bucket, count, joined in self.buffers.drain():
                self._ship(bucket, count, joined)

    def _close(self, bucket: int) -> None:
        parts = self._parts[bucket]
        self._parts[bucket] = []
        self._ship(bucket, len(parts), b"".join(parts))

    def _ship(self, bucket: int, count: int, joined: bytes) -> None:
        self.queue.append(bucket, count, snappy_compress(joined))
        self._messages.inc()
        self._samples.inc(count)
