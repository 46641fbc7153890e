"""What the sinks that write each sample as a line or a datapoint share (``influxdb``,
``opentsdb``): reading every record's series with its cluster, and counting what
encoding left out or rewrote, once per record and only when the record is finished
(delivered or dead-lettered), so retries never count twice."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Set
from dataclasses import dataclass, field

from ferryman import headers as h
from ferryman.wire.remote_write import TimeSeries
from workers.function import Context
from workers.records import Batch

from ._records import UnsupportedRecord, decode_series

__all__ = ["EncodeSeries", "SeriesCounters", "Tally", "encode_records"]


@dataclass
class Tally:
    """What encoding one record left out or rewrote."""

    skipped: Counter[str] = field(default_factory=Counter)
    sanitized: Counter[str] = field(default_factory=Counter)
    tags_dropped: int = 0


#: Turns one series (with the record's cluster, None when it has none) into request units,
#: noting in the tally what it left out or rewrote.
EncodeSeries = Callable[[TimeSeries, str | None, Tally], Iterable[bytes]]


def encode_records(
    batch: Batch, dead: dict[int, str], encode: EncodeSeries
) -> tuple[list[tuple[int, bytes]], list[Tally]]:
    """Every unit of the batch with its record's index, and a tally per record; records
    that are not remote-write payloads go to ``dead`` with the reason."""
    tallies = [Tally() for _ in batch]
    units: list[tuple[int, bytes]] = []
    for index, record in enumerate(batch):
        try:
            series = decode_series(record)
        except UnsupportedRecord as exc:
            dead[index] = str(exc)
            continue
        raw = record.header(h.CLUSTER)
        cluster = raw.decode("utf-8", "replace") if raw else None
        tally = tallies[index]
        for one in series:
            units.extend((index, unit) for unit in encode(one, cluster, tally))
    return units, tallies


class SeriesCounters:
    """``ferryman_samples_skipped_total{function,reason}``,
    ``ferryman_names_sanitized_total{function,what}`` and, for sinks with a tag limit,
    ``ferryman_tags_dropped_total{function}``."""

    def __init__(self, context: Context, *, tag_limit: bool = False) -> None:
        self.function = context.function
        self.skipped = context.registry.counter(
            "ferryman_samples_skipped_total",
            "Samples not written because the backend cannot store them, by reason.",
            ["function", "reason"],
        )
        self.sanitized = context.registry.counter(
            "ferryman_names_sanitized_total",
            "Names and tag values rewritten to fit the backend, by what.",
            ["function", "what"],
        )
        self.tags_dropped = (
            context.registry.counter(
                "ferryman_tags_dropped_total",
                "Tags left out of series over the backend's tag limit.",
                ["function"],
            )
            if tag_limit
            else None
        )

    def count(self, tallies: list[Tally], retry: Set[int]) -> None:
        """Count the tallies of the records that are finished (not in ``retry``)."""
        for index, tally in enumerate(tallies):
            if index in retry:
                continue
            for reason, count in tally.skipped.items():
                self.skipped.labels(function=self.function, reason=reason).inc(count)
            for what, count in tally.sanitized.items():
                self.sanitized.labels(function=self.function, what=what).inc(count)
            if self.tags_dropped is not None and tally.tags_dropped:
                self.tags_dropped.labels(function=self.function).inc(tally.tags_dropped)
