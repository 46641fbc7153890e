"""The batch the edge log shipper assembles between two produces.

What a batch holds is shipped together: Kafka acknowledges all of it or the
shipper keeps it and tries again; only then do the file offsets in ``ends`` and
the journal cursors in ``cursors`` go to the positions file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ferryman.lineage import SpanContext
from ferryman.wire import loki

__all__ = ["Batch", "stream_labels"]


@dataclass
class Batch:
    #: formatted label set → its entries, in reading order
    streams: dict[str, loki.Entries] = field(default_factory=dict)
    #: (device, inode) → (path, offset) a file is read up to once this batch is in Kafka
    ends: dict[tuple[int, int], tuple[str, int]] = field(default_factory=dict)
    #: per stream, the files its entries came from: runs of (source id, end offsets),
    #: in entry order (see :mod:`ferryman.wire.lines`); none for journal streams
    sources: dict[str, list[tuple[bytes, list[int]]]] = field(default_factory=dict)
    #: compressed files read to their end in this batch
    done: set[tuple[int, int]] = field(default_factory=set)
    #: positions cursor key (``journal/<job>``) → cursor of the last entry read
    cursors: dict[str, str] = field(default_factory=dict)
    size: int = 0
    lines: int = 0
    started: float = 0.0
    #: batch lineage: each message's context by (stream, part), kept across attempts
    contexts: dict[tuple[str, int], SpanContext] = field(default_factory=dict)
    #: produce attempts so far, and the last one's error (the batch is then traced)
    attempts: int = 0
    error: str | None = None

    def add_sources(self, stream: str, source: bytes, ends: list[int]) -> None:
        """The entries just added to ``stream`` came from ``source`` and end at ``ends``."""
        runs = self.sources.setdefault(stream, [])
        if runs and runs[-1][0] == source:
            runs[-1][1].extend(ends)
        else:
            runs.append((source, list(ends)))

    def pending(self) -> bool:
        """Whether shipping it would change anything: lines, or positions to save."""
        return bool(self.lines or self.ends or self.cursors)


def stream_labels(
    relabeled: Mapping[str, str], host: str, external: Mapping[str, str]
) -> dict[str, str]:
    """A stream's final labels: the relabeled ones without ``__`` labels, then ``host``
    and the external labels where relabeling did not set them."""
    labels = {k: v for k, v in relabeled.items() if not k.startswith("__")}
    labels.setdefault("host", host)
    for key, value in external.items():
        labels.setdefault(key, value)
    return labels
