"""Read-time timestamps that a restart reproduces.

A line no stage timestamps is stamped with the time it was read. After a crash the
lines of the unacknowledged batch are read again; were they stamped anew, every
sink that identifies a line by its timestamp (Elasticsearch's ``_id``, Loki's
dedup of identical entries) would store them twice. So each read of a file opens
an *anchor* ``(start, end, ts)``: the line ending at offset ``e`` (``start < e <=
end``) gets ``ts + (e - start)`` — strictly increasing within the file. Anchors of
lines not yet acknowledged are written to the positions file *before* the batch is
produced, and a restarted shipper stamps the re-read lines from them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .tailer import Line

__all__ = ["Anchor", "ReadClock"]

Identity = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Anchor:
    start: int
    end: int
    ts: int


class ReadClock:
    """The anchors of one tailed file (all its identities: a rotation moves on to a
    new inode while the old one's anchors may still be needed)."""

    def __init__(self, saved: dict[Identity, Sequence[Anchor]] | None = None) -> None:
        self.anchors: dict[Identity, list[Anchor]] = {
            identity: sorted(anchors, key=lambda a: a.start)
            for identity, anchors in (saved or {}).items()}
        self.unsaved = False
        self._last_ts = max((a.ts + a.end - a.start for anchors in self.anchors.values()
                             for a in anchors), default=0)

    def stamps(self, lines: Sequence[Line], now_ns: int) -> list[int]:
        """One timestamp per line: from a saved anchor when the line was stamped before,
        else from a new anchor at ``now_ns`` (never before a stamp already given)."""
        out: list[int] = []
        open_anchor: Anchor | None = None
        open_identity: Identity | None = None
        for line in lines:
            identity = (line.device, line.inode)
            anchor = self._covering(identity, line.end_offset)
            if anchor is None:
                if open_anchor is not None and open_identity == identity \
                        and line.end_offset > open_anchor.end:
                    open_anchor = Anchor(open_anchor.start, line.end_offset, open_anchor.ts)
                    self.anchors[identity][-1] = open_anchor
                else:
                    start = line.end_offset - 1
                    ts = max(now_ns, self._last_ts + 1) - 1
                    open_anchor, open_identity = Anchor(start, line.end_offset, ts), identity
                    self._open(identity, open_anchor)
                anchor = open_anchor
            stamp = anchor.ts + (line.end_offset - anchor.start)
            self._last_ts = max(self._last_ts, stamp)
            out.append(stamp)
        return out

    def _covering(self, identity: Identity, end: int) -> Anchor | None:
        for anchor in reversed(self.anchors.get(identity, ())):
            if anchor.start < end <= anchor.end:
                return anchor
            if anchor.end < end:
                return None
        return None

    def _open(self, identity: Identity, anchor: Anchor) -> None:
        anchors = self.anchors.setdefault(identity, [])
        # Offsets restarting below known anchors mean the file was emptied
        # (copytruncate): the old anchors describe content that is gone.
        if anchors and anchors[-1].end >= anchor.end:
            anchors.clear()
        anchors.append(anchor)
        self.unsaved = True

    def acknowledged(self, identity: Identity, offset: int) -> None:
        """Lines up to ``offset`` are in Kafka: their anchors are no longer needed."""
        anchors = self.anchors.get(identity)
        if anchors:
            self.anchors[identity] = [a for a in anchors if a.end > offset]

    def forget(self, identity: Identity) -> None:
        self.anchors.pop(identity, None)

    def pending(self, identity: Identity) -> list[Anchor]:
        return list(self.anchors.get(identity, ()))
