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
from itertools import accumulate, islice
from operator import attrgetter, lt

from .tailer import Line, Lines

__all__ = ["Anchor", "ReadClock"]

Identity = tuple[int, int]
_IDENTITY = attrgetter("device", "inode")
_END = attrgetter("end_offset")


@dataclass(frozen=True, slots=True)
class Anchor:
    start: int
    end: int
    ts: int


_Opened = tuple[Identity, Anchor]  # the anchor a call to stamps opened last, and its file


class ReadClock:
    """The anchors of one tailed file (all its identities: a rotation moves on to a
    new inode while the old one's anchors may still be needed)."""

    def __init__(self, saved: dict[Identity, Sequence[Anchor]] | None = None) -> None:
        self.anchors: dict[Identity, list[Anchor]] = {
            identity: sorted(anchors, key=lambda a: a.start)
            for identity, anchors in (saved or {}).items()
        }
        self.unsaved = False
        self._last_ts = max(
            (a.ts + a.end - a.start for anchors in self.anchors.values() for a in anchors),
            default=0,
        )

    def stamps(self, lines: Sequence[Line], now_ns: int) -> list[int]:
        """One timestamp per line: from a saved anchor when the line was stamped before,
        else from a new anchor at ``now_ns`` (never before a stamp already given)."""
        if len(set(map(_IDENTITY, lines))) == 1:
            return self.stamp_ends(
                (lines[0].device, lines[0].inode), list(map(_END, lines)), now_ns
            )
        out: list[int] = []
        opened: _Opened | None = None
        for line in lines:
            stamp, opened = self._stamp((line.device, line.inode), line.end_offset, now_ns, opened)
            out.append(stamp)
        return out

    def stamp_lines(self, lines: Lines, now_ns: int) -> list[int]:
        """:meth:`stamps` for one read by column; when no line of it was stamped before
        (all but the first reads after a restart), by arithmetic over the spans."""
        if not lines:
            return []
        identity = lines.identity
        first_end = lines.start + lines.spans[0]
        known = self.anchors.get(identity)
        if known and first_end <= known[-1].end:
            return self.stamp_ends(identity, lines.ends, now_ns)
        start, ts = first_end - 1, max(now_ns, self._last_ts + 1) - 1
        self._open(identity, Anchor(start, lines.end, ts))
        out = list(islice(accumulate(lines.spans, initial=ts - start + lines.start), 1, None))
        self._last_ts = max(self._last_ts, out[-1])
        return out

    def stamp_ends(self, identity: Identity, ends: Sequence[int], now_ns: int) -> list[int]:
        """:meth:`stamps` for lines of one file given by their end offsets. The lines
        past every anchor (all but lines read again) are stamped together."""
        out: list[int] = []
        rising = all(map(lt, ends, islice(ends, 1, None)))
        opened: _Opened | None = None
        for index, end in enumerate(ends):
            known = self.anchors.get(identity)
            if rising and (not known or end > known[-1].end):
                # One anchor for the rest: the one this call opened, extended, or a new one.
                if opened is not None and end > opened[1].end:
                    start, ts = opened[1].start, opened[1].ts
                else:
                    start, ts = end - 1, max(now_ns, self._last_ts + 1) - 1
                    self._open(identity, Anchor(start, end, ts))
                self.anchors[identity][-1] = Anchor(start, ends[-1], ts)
                out += map((ts - start).__add__, islice(ends, index, None))
                self._last_ts = max(self._last_ts, out[-1])
                break
            stamp, opened = self._stamp(identity, end, now_ns, opened)
            out.append(stamp)
        return out

    def _stamp(
        self, identity: Identity, end: int, now_ns: int, opened: _Opened | None
    ) -> tuple[int, _Opened | None]:
        """The stamp of one line, and the anchor this call opened last (which a later
        line of the same file past it extends)."""
        anchor = self._covering(identity, end)
        if anchor is None:
            if opened is not None and opened[0] == identity and end > opened[1].end:
                anchor = Anchor(opened[1].start, end, opened[1].ts)
                self.anchors[identity][-1] = anchor
            else:
                anchor = Anchor(end - 1, end, max(now_ns, self._last_ts + 1) - 1)
                self._open(identity, anchor)
            opened = (identity, anchor)
        stamp = anchor.ts + (end - anchor.start)
        self._last_ts = max(self._last_ts, stamp)
        return stamp, opened

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
