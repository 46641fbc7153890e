"""What flows between stages, and what every stage is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ferryman.telemetry import Counter

__all__ = ["Record", "Stage", "StageMetrics"]


@dataclass(slots=True)
class Record:
    """One log entry on its way through a file's pipeline.

    ``labels`` is shared with the file and other records until a stage changes it:
    stages replace the mapping, never mutate it. ``start``/``end`` are the file
    offsets of the first and last source line this entry was built from.
    """

    line: str
    labels: dict[str, str]
    timestamp_ns: int
    extracted: dict[str, Any]
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class StageMetrics:
    """The shipper's counters that stages report to."""

    errors: Counter  # ferryman_errors_total{error_type,stage}
    dropped: Counter  # ferryman_lines_dropped_total{reason}

    def error(self, error_type: str, stage: str, count: int = 1) -> None:
        self.errors.labels(error_type=error_type, stage=stage).inc(count)


class Stage:
    """A step over a list of records in file order. Stateless stages only implement
    :meth:`run`; stages that hold records (partial lines, multiline) also report
    what they hold, so positions never pass a line that was not shipped."""

    name = "stage"

    def __init__(self, metrics: StageMetrics) -> None:
        self.metrics = metrics

    def run(self, records: list[Record], now: float) -> list[Record]:
        """Records in, records out, in order; ``now`` is a monotonic clock in seconds
        for stages that release held records after a while."""
        raise NotImplementedError

    def held_start(self) -> int | None:
        """The lowest ``start`` of the records held back, None when none is."""
        return None

    def release(self) -> list[Record]:
        """Hand out everything held, as it is (on rotation or reload)."""
        return []

    def failed(self, error_type: str) -> None:
        self.metrics.error(error_type, self.name)
